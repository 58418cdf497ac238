"""The drift job behind `botclick drift-check`.

Steps, all under the monitor lock so that two jobs never overlap:

1. Load the champion, the reference window (its training sample, or `--reference-logs`)
   and the current window (the last `monitor.window.current_days` days of `--logs`).
2. Keep at most `max_sessions_per_client` sessions per client, and give "not enough data"
   when a window has fewer than `min_sessions`.
3. Run the Evidently drift check and write the HTML, summary.json, summary.md and the
   daily report.
4. On drift with `--retrain`: retrain on the pipeline input plus the new logs, run the
   promotion gate on the new logs' held-out sessions, and record the decision.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from src.monitor.daily import build_daily_report, write_daily_report
from src.monitor.drift import DriftResult, compute_drift
from src.monitor.gate import run_gate
from src.monitor.lock import monitor_lock
from src.monitor.reference import load_reference
from src.monitor.registry_ops import record_run
from src.monitor.retrain import retrain
from src.monitor.sessions import LAST_SEEN, SCORE, USER_AGENT_FAMILY, SessionWindow, cap_sessions_per_client, session_scores, window_from_logs
from src.monitor.settings import ExitCode
from src.monitor.summary import (
    DRIFT,
    HOLDOUT_FILE,
    HTML_FILE,
    JSON_FILE,
    MARKDOWN_FILE,
    NO_DRIFT,
    NOT_ENOUGH_DATA,
    RETRAIN_LOG_FILE,
    build_summary,
    write_summary,
)
from src.serve.champion import LoadedModel, load_champion

logger = logging.getLogger(__name__)


@dataclass
class DriftCheckRequest:
    """Input of one drift job: current logs, an optional reference from logs, and the retrain switch."""

    logs: list[Path]
    reference_logs: list[Path] = field(default_factory=list)
    # Simulator ground truth for the current logs, used as labels when retraining.
    ground_truth: list[Path] = field(default_factory=list)
    retrain: bool = False
    end: pd.Timestamp | None = None
    report_dir: Path | None = None


@dataclass
class DriftCheckOutcome:
    """The exit code, the summary written to summary.json and the report folder."""

    exit_code: ExitCode
    summary: dict[str, Any]
    report_dir: Path


@dataclass
class Verdict:
    """The drift verdict with the numbers behind it."""

    status: str
    exit_code: ExitCode
    reason: str
    tested: dict[str, int]
    result: DriftResult | None = None
    snapshot: Any = None


def run_drift_check(request: DriftCheckRequest, cfg: DictConfig) -> DriftCheckOutcome:
    """Run the drift job under the monitor lock and return its outcome."""
    with monitor_lock(cfg):
        return check(request, cfg)


def load_windows(request: DriftCheckRequest, champion: LoadedModel, cfg: DictConfig) -> tuple[SessionWindow, SessionWindow]:
    """Return the reference and current windows, both scored by the champion."""
    window_cfg = cfg.monitor.window
    current = window_from_logs("current", request.logs, cfg, request.end, float(window_cfg.current_days))
    current.sessions[SCORE] = session_scores(current.sessions, champion.booster, champion.meta.feature_names)
    if not request.reference_logs:
        return load_reference(champion, cfg), current

    days = None if window_cfg.reference_days is None else float(window_cfg.reference_days)
    reference = window_from_logs("reference", request.reference_logs, cfg, None, days)
    reference.sessions[SCORE] = session_scores(reference.sessions, champion.booster, champion.meta.feature_names)
    return reference, current


def decide_verdict(reference: SessionWindow, current: SessionWindow, champion: LoadedModel, cfg: DictConfig) -> Verdict:
    """Cap sessions per client, check the window sizes, and run the drift check."""
    window_cfg = cfg.monitor.window
    capped = {w.name: cap_sessions_per_client(w.sessions, int(window_cfg.max_sessions_per_client)) for w in (reference, current)}
    tested = {name: len(rows) for name, rows in capped.items()}
    minimum = int(window_cfg.min_sessions)
    short = [f"the {name} window has {count} sessions" for name, count in tested.items() if count < minimum]
    if short:
        reason = f"Not enough data: {' and '.join(short)} after the per-client cap, fewer than monitor.window.min_sessions={minimum}, so there is no verdict."
        return Verdict(NOT_ENOUGH_DATA, ExitCode.NOT_ENOUGH_DATA, reason, tested)

    result, snapshot = compute_drift(
        capped["reference"], capped["current"], champion.meta.feature_names, [USER_AGENT_FAMILY], SCORE, cfg.monitor.drift
    )
    if snapshot is None:
        return Verdict(NOT_ENOUGH_DATA, ExitCode.NOT_ENOUGH_DATA, "Not enough data: no column could be tested (every column is empty or constant).", tested, result)
    status, code = (DRIFT, ExitCode.DRIFT) if result.drifted else (NO_DRIFT, ExitCode.OK)
    return Verdict(status, code, explain_verdict(result), tested, result, snapshot)


def explain_verdict(result: DriftResult) -> str:
    """Return one or two sentences that name the signals that drifted."""
    share = f"{result.share_drifted:.0%} of the tested columns drifted (drift from {result.drift_share:.0%})"
    signals = []
    if result.feature_drift:
        signals.append(share)
    if result.prediction is not None and result.prediction.drifted:
        signals.append("the champion's score distribution drifted")
    if result.trigger_drifted:
        signals.append(f"trigger column {', '.join(result.trigger_drifted)} drifted")
    if signals:
        return "Drift: " + "; ".join(signals) + "."
    return f"No drift: {share}, and neither the champion's scores nor a trigger column drifted."


def check(request: DriftCheckRequest, cfg: DictConfig) -> DriftCheckOutcome:
    """Run the drift job; the caller holds the monitor lock."""
    champion = load_champion(cfg)
    reference, current = load_windows(request, champion, cfg)
    verdict = decide_verdict(reference, current, champion, cfg)
    logger.info("drift verdict: %s (exit code %d). %s", verdict.status, verdict.exit_code, verdict.reason)

    report_dir = request.report_dir or Path(str(cfg.monitor.reports_dir)) / datetime.now(timezone.utc).date().isoformat()
    report_dir.mkdir(parents=True, exist_ok=True)
    summary = build_summary(verdict.status, int(verdict.exit_code), verdict.reason, champion, (reference, current), verdict.tested, verdict.result, cfg)
    summary["files"] = write_side_reports(verdict, current, champion, report_dir, request, cfg)
    summary["decision"] = initial_decision(verdict.status, request.retrain)
    write_summary(summary, report_dir)

    exit_code = verdict.exit_code
    if verdict.status == DRIFT and request.retrain:
        summary["decision"], exit_code = retrain_and_gate(request, cfg, report_dir)
        summary["exit_code"] = int(exit_code)
        summary["files"] |= {name: file for name, file in (("holdout", HOLDOUT_FILE), ("retrain_log", RETRAIN_LOG_FILE)) if (report_dir / file).is_file()}
        write_summary(summary, report_dir)

    summary["mlflow_run_id"] = record_check(cfg, summary, report_dir)
    write_summary(summary, report_dir)
    return DriftCheckOutcome(exit_code, summary, report_dir)


def write_side_reports(
    verdict: Verdict, current: SessionWindow, champion: LoadedModel, report_dir: Path, request: DriftCheckRequest, cfg: DictConfig
) -> dict[str, str]:
    """Write the Evidently HTML and the daily report; return the summary's `files` entry."""
    files = {}
    if verdict.snapshot is not None:
        verdict.snapshot.save_html(str(report_dir / HTML_FILE))
        files["html"] = HTML_FILE
    files |= {"json": JSON_FILE, "markdown": MARKDOWN_FILE}

    if len(current.sessions):
        daily_dir = Path(str(cfg.monitor.daily_dir))
        end = request.end if request.end is not None else current.sessions[LAST_SEEN].max()
        drift = {"date": datetime.now(timezone.utc).date().isoformat(), "status": verdict.status, "decision": None,
                 "report": os.path.relpath(report_dir / MARKDOWN_FILE, daily_dir)}
        _, markdown = write_daily_report(build_daily_report(current.sessions, champion, end, cfg, drift), daily_dir)
        files["daily_report"] = os.path.relpath(markdown, report_dir)
    return files


def initial_decision(status: str, retrain_requested: bool) -> dict[str, Any]:
    """Return the decision before any retrain: what the job does for this verdict."""
    if status != DRIFT:
        return {"action": "none", "detail": "The champion stays; nothing to retrain."}
    if not retrain_requested:
        return {"action": "retrain_not_requested", "detail": "The champion stays. Run with --retrain to retrain and gate a challenger."}
    return {"action": "retraining", "detail": "Retraining started."}


def retrain_and_gate(request: DriftCheckRequest, cfg: DictConfig, report_dir: Path) -> tuple[dict[str, Any], ExitCode]:
    """Retrain, run the promotion gate and return the decision entry and the exit code."""
    try:
        result = retrain(cfg, request.logs, request.ground_truth, report_dir)
        result.holdout.to_parquet(report_dir / HOLDOUT_FILE, index=False)
        decision = run_gate(cfg, result.version, result.holdout, str(report_dir / HOLDOUT_FILE))
    except Exception as exc:  # noqa: BLE001 - any stage error must still end in a report and exit code 5
        logger.exception("retraining or the promotion gate failed")
        return {"action": "retrain_failed", "detail": f"{type(exc).__name__}: {exc}"}, ExitCode.RETRAIN_FAILED

    retrain_info = {
        "version": result.version, "run_id": result.run_id, "runner": result.runner, "input_files": result.input_files,
        "holdout_sessions": len(result.holdout), "notes": result.notes,
    }
    action = "promoted" if decision.promote else "kept_champion"
    return {"action": action, "detail": decision.reason, "gate": decision.to_dict(), "retrain": retrain_info}, ExitCode.DRIFT


def record_check(cfg: DictConfig, summary: dict[str, Any], report_dir: Path) -> str:
    """Log the check as an MLflow run named "drift-check" with the summaries as artifacts."""
    windows = summary["windows"]
    feature = summary["feature_drift"] or {}
    prediction = summary["prediction_drift"] or {}
    params = {
        "champion_version": summary["champion"]["version"], "current_files": ", ".join(windows["current"]["files"]),
        "reference_source": windows["reference"]["source"], "current_days": cfg.monitor.window.current_days,
        "drift_share": cfg.monitor.drift.drift_share, "min_sessions": cfg.monitor.window.min_sessions,
    }
    metrics = {
        "reference_sessions": windows["reference"]["sessions_tested"], "current_sessions": windows["current"]["sessions_tested"],
        "share_drifted": feature.get("share_drifted"), "prediction_drift_score": prediction.get("score"),
        "flag_rate_reference": windows["reference"]["flag_rate"], "flag_rate_current": windows["current"]["flag_rate"],
    }
    decision = summary["decision"]
    tags = {"drift_status": summary["status"], "decision": decision["action"], "exit_code": summary["exit_code"]}
    if decision.get("gate"):
        tags["gate_run_id"] = decision["gate"]["run_id"]
    artifacts = [str(report_dir / JSON_FILE), str(report_dir / MARKDOWN_FILE)]
    if cfg.monitor.drift.log_html_to_mlflow and (report_dir / HTML_FILE).is_file():
        artifacts.append(str(report_dir / HTML_FILE))
    return record_run(cfg, "drift-check", params, metrics, tags, artifacts)
