"""Daily stats report (`botclick report daily`): traffic, bot share by decision and top clients.

Writes `<monitor.daily_dir>/<date>.json` for machines and `<date>.md` for people. A day
contains the sessions whose last request falls within `monitor.daily.days` days up to the
window end. Clients appear only as their keyed IP pseudonyms (`client_id`).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from src.monitor.render import json_ready, markdown_table, percent
from src.monitor.sessions import CLICKS, LAST_SEEN, SCORE, USER_AGENT_FAMILY, user_agent_family_only
from src.serve.settings import ALLOW, FLAG
from src.serve.champion import LoadedModel

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1


def decision_counts(sessions: pd.DataFrame) -> dict[str, dict[str, float | int | None]]:
    """Count sessions, requests and affiliate clicks per decision, with shares of the totals."""
    totals = {"sessions": len(sessions), "requests": int(sessions["n_requests"].sum()), "affiliate_clicks": int(sessions[CLICKS].sum())}
    result: dict[str, dict[str, float | int | None]] = {}
    for decision in (FLAG, ALLOW):
        part = sessions[sessions["decision"] == decision]
        counts = {"sessions": len(part), "requests": int(part["n_requests"].sum()), "affiliate_clicks": int(part[CLICKS].sum())}
        shares = {f"share_of_{key}": (counts[key] / total if total else None) for key, total in totals.items()}
        result[decision] = {**counts, **shares}
    result["total"] = dict(totals)
    return result


def top_flagged_clients(sessions: pd.DataFrame, count: int) -> list[dict[str, Any]]:
    """Return the flagged clients with the most affiliate clicks, then the most requests."""
    flagged = sessions[sessions["decision"] == FLAG]
    if flagged.empty:
        return []
    grouped = flagged.groupby("client_id").agg(
        sessions=("session_id", "size"), requests=("n_requests", "sum"), affiliate_clicks=(CLICKS, "sum"), max_score=(SCORE, "max"),
        user_agent_families=(USER_AGENT_FAMILY, lambda families: sorted(set(families))),
    )
    ordered = grouped.sort_values(["affiliate_clicks", "requests", "max_score"], ascending=False).head(count)
    return [
        {"client_id": str(client), "sessions": int(row.sessions), "requests": int(row.requests), "affiliate_clicks": int(row.affiliate_clicks),
         "max_score": float(row.max_score), "user_agent_families": list(row.user_agent_families)}
        for client, row in ordered.iterrows()
    ]


def top_user_agent_families(sessions: pd.DataFrame, count: int) -> list[dict[str, Any]]:
    """Return the user-agent families (without version) with the most sessions."""
    table = sessions.assign(family=sessions[USER_AGENT_FAMILY].map(user_agent_family_only), flagged=sessions["decision"] == FLAG)
    grouped = table.groupby("family").agg(sessions=("session_id", "size"), flagged_sessions=("flagged", "sum"), affiliate_clicks=(CLICKS, "sum"))
    ordered = grouped.sort_values(["sessions", "affiliate_clicks"], ascending=False).head(count)
    return [
        {"family": str(family), "sessions": int(row.sessions), "flagged_sessions": int(row.flagged_sessions),
         "flag_share": float(row.flagged_sessions / row.sessions), "affiliate_clicks": int(row.affiliate_clicks)}
        for family, row in ordered.iterrows()
    ]


def latest_drift(reports_dir: Path, daily_dir: Path) -> dict[str, Any] | None:
    """Return the verdict of the newest drift summary under `reports_dir`, or None when there is none."""
    summaries = sorted(reports_dir.glob("*/summary.json"))
    if not summaries:
        return None
    summary = json.loads(summaries[-1].read_text(encoding="utf-8"))
    markdown = summaries[-1].with_name("summary.md")
    return {
        "date": summary.get("date"), "status": summary.get("status"), "decision": summary.get("decision", {}).get("action"),
        "report": os.path.relpath(markdown, daily_dir),
    }


def build_daily_report(
    sessions: pd.DataFrame, model: LoadedModel, end: pd.Timestamp, cfg: DictConfig, drift: dict[str, Any] | None
) -> dict[str, Any]:
    """Return the daily report for scored sessions (columns of `session_table` plus bot_probability)."""
    daily_cfg = cfg.monitor.daily
    start = end - pd.Timedelta(days=float(daily_cfg.days))
    day = sessions[(sessions[LAST_SEEN] > start) & (sessions[LAST_SEEN] <= end)].copy()
    day["decision"] = [FLAG if score >= model.meta.threshold else ALLOW for score in day[SCORE]]
    return {
        "schema_version": SCHEMA_VERSION,
        "date": end.date().isoformat(),
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "window": {"start": start.isoformat(), "end": end.isoformat(), "days": float(daily_cfg.days)},
        "model": {"name": str(cfg.mlflow.registered_model), "version": model.version, "threshold": float(model.meta.threshold), "run_id": model.meta.run_id},
        "clients": int(day["client_id"].nunique()),
        "by_decision": decision_counts(day),
        "top_flagged_clients": top_flagged_clients(day, int(daily_cfg.top_clients)),
        "top_user_agent_families": top_user_agent_families(day, int(daily_cfg.top_user_agents)),
        "latest_drift": drift,
    }


def render_daily_markdown(report: dict[str, Any]) -> str:
    """Return the Markdown page of a daily report."""
    model, counts, window = report["model"], report["by_decision"], report["window"]
    drift = report["latest_drift"]
    drift_line = "no drift check has run yet" if drift is None else f"{drift['status']} on {drift['date']} ([summary]({drift['report']}))"
    lines = [
        f"# Daily bot-click report {report['date']}", "",
        f"Sessions whose last request falls between {window['start']} and {window['end']} (UTC).",
        f"Model: {model['name']} version {model['version']} (flags at bot probability >= {model['threshold']:.4f}). "
        f"Latest drift check: {drift_line}.", "",
    ]
    rows = []
    for label, key in (("flagged as bot", FLAG), ("allowed", ALLOW)):
        part = counts[key]
        rows.append([label] + [f"{part[name]:,} ({percent(part[f'share_of_{name}'])})" for name in ("sessions", "requests", "affiliate_clicks")])
    rows.append(["total"] + [f"{counts['total'][name]:,}" for name in ("sessions", "requests", "affiliate_clicks")])
    lines += markdown_table(["decision", "sessions", "requests", "affiliate clicks"], rows)
    lines += ["", f"Distinct clients: {report['clients']:,}.", "", "## Top flagged clients (IP pseudonyms)", ""]

    clients = report["top_flagged_clients"]
    client_rows = [[c["client_id"], c["sessions"], c["requests"], c["affiliate_clicks"], f"{c['max_score']:.3f}", ", ".join(c["user_agent_families"])] for c in clients]
    lines += markdown_table(["client", "sessions", "requests", "affiliate clicks", "max score", "user agents"], client_rows) if clients else ["No session was flagged."]
    lines += ["", "## Top user-agent families", ""]
    family_rows = [[f["family"], f["sessions"], f"{f['flagged_sessions']} ({percent(f['flag_share'])})", f["affiliate_clicks"]] for f in report["top_user_agent_families"]]
    lines += markdown_table(["family", "sessions", "flagged", "affiliate clicks"], family_rows)
    return "\n".join(lines) + "\n"


def write_daily_report(report: dict[str, Any], daily_dir: Path) -> tuple[Path, Path]:
    """Write `<date>.json` and `<date>.md` into `daily_dir` and return both paths."""
    daily_dir.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = daily_dir / f"{report['date']}.json", daily_dir / f"{report['date']}.md"
    json_path.write_text(json.dumps(json_ready(report), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    markdown_path.write_text(render_daily_markdown(report), encoding="utf-8")
    logger.info("wrote the daily report %s and %s", json_path, markdown_path)
    return json_path, markdown_path
