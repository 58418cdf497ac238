"""The drift check's outputs: summary.json for machines and summary.md for people.

Layout of `<monitor.reports_dir>/<date>/` (docs/monitoring.md shows an example):
`drift_report.html` (Evidently), `summary.json`, `summary.md`, and after a retrain
`holdout.parquet` (the gate's held-out sessions) and, with the dvc runner, `retrain.log`.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from src.monitor.drift import DriftResult
from src.monitor.render import json_ready, markdown_table, number, percent
from src.monitor.sessions import SCORE, SessionWindow
from src.serve.champion import LoadedModel

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
HTML_FILE, JSON_FILE, MARKDOWN_FILE = "drift_report.html", "summary.json", "summary.md"
HOLDOUT_FILE, RETRAIN_LOG_FILE = "holdout.parquet", "retrain.log"
NO_DRIFT, DRIFT, NOT_ENOUGH_DATA = "no_drift", "drift", "not_enough_data"


def score_profile(window: SessionWindow, threshold: float) -> dict[str, float | None]:
    """Return the mean champion score and the share of sessions at or above the threshold."""
    scores = window.sessions[SCORE].to_numpy(dtype=np.float64) if len(window.sessions) else np.empty(0)
    if not len(scores):
        return {"mean_score": None, "flag_rate": None}
    return {"mean_score": float(scores.mean()), "flag_rate": float((scores >= threshold).mean())}


def drift_section(result: DriftResult | None) -> dict[str, Any]:
    """Return the drift part of the summary; every value is null when no drift run happened."""
    if result is None:
        return {"feature_drift": None, "prediction_drift": None, "trigger_columns": None, "features": [], "skipped_columns": [], "evidently_tests": None}
    features = result.features
    return {
        "feature_drift": {
            "drifted": result.feature_drift, "share_drifted": result.share_drifted, "drift_share": result.drift_share,
            "columns_tested": len(features), "columns_drifted": sum(c.drifted for c in features),
        },
        "prediction_drift": result.prediction.to_dict() if result.prediction else None,
        "trigger_columns": {"drifted": result.trigger_drifted},
        "features": [c.to_dict() for c in features],
        "skipped_columns": [{"column": s.column, "reason": s.reason} for s in result.skipped],
        "kept_categories": result.kept_categories,
        "evidently_tests": result.tests,
    }


def build_summary(
    status: str,
    exit_code: int,
    reason: str,
    champion: LoadedModel,
    windows: tuple[SessionWindow, SessionWindow],
    tested: dict[str, int],
    result: DriftResult | None,
    cfg: DictConfig,
) -> dict[str, Any]:
    """Return the summary.json content, without `decision` and `files`, which the job adds."""
    reference, current = windows
    monitor = cfg.monitor
    described = {}
    for window in windows:
        described[window.name] = {**window.describe(), "sessions_tested": tested[window.name], **score_profile(window, champion.meta.threshold)}
    return {
        "schema_version": SCHEMA_VERSION,
        "date": datetime.now(timezone.utc).date().isoformat(),
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": status,
        "exit_code": exit_code,
        "reason": reason,
        "champion": {
            "name": str(cfg.mlflow.registered_model), "version": champion.version, "run_id": champion.meta.run_id,
            "threshold": float(champion.meta.threshold), "data_version": champion.meta.data_version,
        },
        "windows": described,
        "settings": {
            "window": OmegaConf.to_container(monitor.window, resolve=True),
            "drift": OmegaConf.to_container(monitor.drift, resolve=True),
        },
        **drift_section(result),
        "decision": {"action": "none", "detail": ""},
        "files": {},
    }


def write_summary(summary: dict[str, Any], report_dir: Path) -> tuple[Path, Path]:
    """Write summary.json and summary.md into `report_dir` and return both paths."""
    report_dir.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = report_dir / JSON_FILE, report_dir / MARKDOWN_FILE
    json_path.write_text(json.dumps(json_ready(summary), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    markdown_path.write_text(render_markdown(summary), encoding="utf-8")
    return json_path, markdown_path


def window_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """Return the rows of the window table of summary.md."""
    reference, current = summary["windows"]["reference"], summary["windows"]["current"]

    def source(window: dict[str, Any]) -> str:
        files = ", ".join(Path(f).name for f in window["files"])
        return f"{window['source']}: {files}" if files else window["source"]

    rows = [["source", source(reference), source(current)]]
    rows.append(["sessions (tested after the per-client cap)", f"{reference['sessions']:,} ({reference['sessions_tested']:,})", f"{current['sessions']:,} ({current['sessions_tested']:,})"])
    rows.append(["first session end", reference["start"] or "n/a", current["start"] or "n/a"])
    rows.append(["last session end", reference["end"] or "n/a", current["end"] or "n/a"])
    threshold = summary["champion"]["threshold"]
    rows.append([f"flagged by the champion (score >= {threshold:.3f})", percent(reference["flag_rate"]), percent(current["flag_rate"])])
    rows.append(["mean champion score", number(reference["mean_score"], 3), number(current["mean_score"], 3)])
    return rows


def signal_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """Return the rows of the drift-signal table of summary.md."""
    feature = summary["feature_drift"]
    rows = [[
        "feature drift: share of drifted columns",
        f"{feature['share_drifted']:.2f} ({feature['columns_drifted']} of {feature['columns_tested']})",
        f">= {feature['drift_share']:.2f}", "yes" if feature["drifted"] else "no",
    ]]
    prediction = summary["prediction_drift"]
    if prediction is None:
        rows.append(["prediction drift: champion score", "not tested", "", "no"])
    else:
        rows.append([f"prediction drift: {prediction['column']} ({prediction['method']})", number(prediction["score"]), _bound(prediction), "yes" if prediction["drifted"] else "no"])
    by_column = {c["column"]: c for c in summary["features"]}
    for column in summary["settings"]["drift"]["trigger_columns"]:
        found = by_column.get(column)
        if found is None:
            rows.append([f"trigger column {column}", "not tested", "", "no"])
        else:
            rows.append([f"trigger column {column} ({found['method']})", number(found["score"]), _bound(found), "yes" if found["drifted"] else "no"])
    return rows


def _bound(column: dict[str, Any]) -> str:
    return f"< {column['threshold']:g}" if column["score_kind"] == "p_value" else f">= {column['threshold']:g}"


def decision_lines(decision: dict[str, Any]) -> list[str]:
    """Return the decision section of summary.md, with the gate's numbers when a gate ran."""
    lines = [f"**{decision['action']}**: {decision['detail']}"]
    gate = decision.get("gate")
    if not gate:
        return lines
    champion_label = f"champion v{gate['champion_version']}" if gate["champion_version"] else "champion (none)"
    metrics = sorted(set(gate["challenger"]) | set(gate["champion"]))
    rows = [[name, number(gate["champion"].get(name)), number(gate["challenger"].get(name))] for name in metrics]
    lines += ["", *markdown_table(["held-out metric", champion_label, f"challenger v{gate['challenger_version']}"], rows)]
    check_rows = [[c["name"], number(c["value"]), c["bound"], "pass" if c["passed"] else "fail"] for c in gate["checks"]]
    lines += ["", *markdown_table(["gate check", "value", "bound", "result"], check_rows)]
    return lines


def render_markdown(summary: dict[str, Any]) -> str:
    """Return the summary.md page: verdict, windows, signals, most drifted features and the decision."""
    champion = summary["champion"]
    lines = [
        f"# Drift check {summary['date']}: {summary['status'].replace('_', ' ')}", "",
        f"Exit code {summary['exit_code']}. {summary['reason']}", "",
        f"Champion: {champion['name']} version {champion['version']} (run {champion['run_id']}).", "",
        *markdown_table(["window", "reference", "current"], window_rows(summary)), "",
    ]
    notes = [note for name in ("reference", "current") for note in summary["windows"][name]["notes"]]
    lines += [f"Note: {note}." for note in notes] + ([""] if notes else [])

    if summary["feature_drift"] is not None:
        lines += ["## Drift signals", "", *markdown_table(["signal", "score", "drift when", "drift"], signal_rows(summary)), ""]
        top = summary["features"][: int(summary["settings"]["drift"]["top_features"])]
        rows = [[c["column"], c["type"], c["method"], number(c["score"]), _bound(c), "yes" if c["drifted"] else "no"] for c in top]
        lines += ["## Most drifted features", "", *markdown_table(["feature", "type", "method", "score", "drift when", "drifted"], rows), ""]
        skipped = summary["skipped_columns"]
        if skipped:
            lines += ["Not tested: " + "; ".join(f"{s['column']} ({s['reason']})" for s in skipped) + ".", ""]

    lines += ["## Decision", "", *decision_lines(summary["decision"]), "", "## Files", ""]
    lines += [f"- {label}: [{target}]({target})" for label, target in summary["files"].items()]
    return "\n".join(lines) + "\n"
