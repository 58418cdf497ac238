"""Session tables for drift checks and daily reports: one row per session, at its last request.

A session row carries the model features as computed at the session's last request.
These are the rows that training and evaluation score (`last_rows`). The row also has
the columns that the monitoring reports need.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from ua_parser import parse as parse_user_agent

from src.features.featurize import featurize_events
from src.features.session_features import FeatureSettings
from src.serve.batch_score import events_from_logs
from src.train.dataset import last_rows
from src.train.model_io import feature_matrix, predict_proba

logger = logging.getLogger(__name__)

USER_AGENT_FAMILY = "user_agent_family"
SCORE = "bot_probability"
# Time of the session's last request (the `ts` of its last feature row).
LAST_SEEN = "ts"
CLICKS = "affiliate_clicks"
EMPTY_USER_AGENT = "(empty)"
UNKNOWN_FAMILY = "Other"
USER_AGENT_CACHE_SIZE = 65536
AFFILIATE_KIND = "affiliate"


@lru_cache(maxsize=USER_AGENT_CACHE_SIZE)
def user_agent_family(user_agent: str) -> str:
    """Return the ua-parser family with its major version, such as "Chrome 142".

    A missing user agent gives "(empty)", and one that ua-parser does not know gives "Other".
    """
    text = user_agent.strip()
    if text in ("", "-"):
        return EMPTY_USER_AGENT
    parsed = parse_user_agent(text).user_agent
    if parsed is None:
        return UNKNOWN_FAMILY
    return f"{parsed.family} {parsed.major}" if parsed.major else parsed.family


def user_agent_family_only(family_with_version: str) -> str:
    """Strip the major version: "Chrome 142" becomes "Chrome"."""
    name, _, last = family_with_version.rpartition(" ")
    return name if name and last.isdigit() else family_with_version


@dataclass
class SessionWindow:
    """The sessions of one window and where they came from."""

    name: str
    sessions: pd.DataFrame
    # "champion_run" (the artifact logged with the champion), "local_files" or "logs".
    source: str
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Line counts of the collect step for windows read from logs.
    lines: dict[str, int] = field(default_factory=dict)
    # Request-level events, kept for the daily report (windows read from logs only).
    events: pd.DataFrame | None = None

    def describe(self) -> dict[str, Any]:
        """Return the JSON description used in the drift summary."""
        times = self.sessions[LAST_SEEN] if len(self.sessions) else pd.Series(dtype="datetime64[us, UTC]")
        return {
            "source": self.source,
            "sessions": int(len(self.sessions)),
            "start": times.min().isoformat() if len(times) else None,
            "end": times.max().isoformat() if len(times) else None,
            "files": self.files,
            "lines": self.lines,
            "notes": self.notes,
        }


def session_table(events: pd.DataFrame, cfg: DictConfig) -> pd.DataFrame:
    """Featurize session-tagged events and return one row per session at its last request.

    Columns: session_id, client_key, client_id, ts (last request), source, the feature
    columns of `features.names`, user_agent_family and affiliate_clicks.
    """
    names = list(cfg.features.names)
    features = featurize_events(events, FeatureSettings.from_config(cfg.features))
    rows = last_rows(features)[["session_id", "client_key", LAST_SEEN, "source", *names]].reset_index(drop=True)

    per_session = events.groupby("session_id", sort=False).agg(client_id=("client_id", "first"), user_agent=("user_agent", "first"))
    per_session["clicks"] = (events["kind"] == AFFILIATE_KIND).groupby(events["session_id"], sort=False).sum()
    rows.insert(2, "client_id", rows["session_id"].map(per_session["client_id"]))
    rows[USER_AGENT_FAMILY] = rows["session_id"].map(per_session["user_agent"]).map(user_agent_family)
    rows[CLICKS] = rows["session_id"].map(per_session["clicks"]).astype("int64")
    return rows


def add_user_agent_families(rows: pd.DataFrame, events_path: Path) -> pd.DataFrame:
    """Add user_agent_family to session rows from the events file, or "" when it is missing."""
    out = rows.copy()
    if not events_path.is_file():
        logger.warning("events file %s not found; the reference sample has no user-agent families", events_path)
        out[USER_AGENT_FAMILY] = ""
        return out
    agents = pd.read_parquet(events_path, columns=["session_id", "user_agent"]).drop_duplicates("session_id")
    families = agents.set_index("session_id")["user_agent"].map(user_agent_family)
    out[USER_AGENT_FAMILY] = out["session_id"].map(families).fillna("")
    return out


def session_scores(rows: pd.DataFrame, booster: Any, feature_names: Sequence[str]) -> np.ndarray:
    """Return the model's bot probability for every session row."""
    return predict_proba(booster, feature_matrix(rows, list(feature_names)))


def select_days(rows: pd.DataFrame, end: pd.Timestamp | None, days: float | None) -> pd.DataFrame:
    """Keep sessions whose last request is within `days` days up to `end` (inclusive).

    `end` None means the latest last-request time, and `days` None keeps every session
    up to `end`.
    """
    if rows.empty:
        return rows
    stop = rows[LAST_SEEN].max() if end is None else end
    keep = rows[LAST_SEEN] <= stop
    if days is not None:
        keep &= rows[LAST_SEEN] > stop - pd.Timedelta(days=float(days))
    return rows[keep].reset_index(drop=True)


def cap_sessions_per_client(rows: pd.DataFrame, max_sessions: int) -> pd.DataFrame:
    """Keep the latest `max_sessions` sessions of each client (client_key)."""
    ordered = rows.sort_values([LAST_SEEN, "session_id"], kind="stable")
    return ordered.groupby("client_key", sort=False).tail(max_sessions).reset_index(drop=True)


def window_from_logs(
    name: str, files: Sequence[Path], cfg: DictConfig, end: pd.Timestamp | None, days: float | None
) -> SessionWindow:
    """Collect, preprocess and featurize log files into a session window.

    Raises ValueError when the files contain no parsable request.
    """
    with tempfile.TemporaryDirectory(prefix=f"botclick-{name}-") as tmp:
        events = events_from_logs(list(files), cfg, Path(tmp))
        collect_report = json.loads((Path(tmp) / "collect.json").read_text(encoding="utf-8"))
    totals = {key: int(value) for key, value in collect_report["totals"].items()}
    if events.empty:
        raise ValueError(
            f"the {name} logs {[str(f) for f in files]} contain no parsable request "
            f"({totals['lines']} lines, {totals['quarantined']} quarantined); check the files and data.log_globs"
        )

    table = select_days(session_table(events, cfg), end, days)
    kept_sessions = set(table["session_id"])
    window_events = events[events["session_id"].isin(kept_sessions)].reset_index(drop=True)
    logger.info("%s window: %d sessions from %d parsed lines of %d files", name, len(table), totals["parsed"], len(files))
    return SessionWindow(name, table, "logs", [str(f) for f in files], lines=totals, events=window_events)
