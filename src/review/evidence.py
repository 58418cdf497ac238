"""Pick the sessions to review and gather their evidence.

Two sources: a score table written by `botclick score` (evidence from the pipeline's
events parquet, or from re-collecting the scored logs), and the scoring service's
click store (evidence from the stored clicks themselves). Either way a session is
picked when its decision is in `review.flag_decisions` or its bot probability lies in
the uncertain band. Evidence contains pseudonyms only, never a raw client IP.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from src.review.queue import FLAGGED, UNCERTAIN, ReviewItem
from src.review.settings import ReviewSettings

logger = logging.getLogger(__name__)

# Event columns read as evidence.
EVIDENCE_COLUMNS: list[str] = ["session_id", "ts", "client_id", "user_agent", "method", "path", "status", "referrer", "kind"]
SCORE_COLUMNS: list[str] = ["session_id", "bot_probability", "decision", "top_features"]
REASON_SEPARATOR = "; "

Explainer = Callable[[pd.DataFrame, Mapping[str, Any]], list[str]]


@dataclass
class QueueSummary:
    """Counts of one queue build: rows read, sessions picked, and those left out with why."""

    rows_read: int = 0
    flagged: int = 0
    uncertain: int = 0
    not_picked: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, count: int = 1) -> None:
        """Count sessions left out of the queue for `reason`."""
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + count


def review_reason(decision: str, probability: float, settings: ReviewSettings) -> str | None:
    """Return "flagged", "uncertain" or None (not queued) for one session."""
    if decision in settings.flag_decisions:
        return FLAGGED
    if settings.uncertain_low <= probability <= settings.uncertain_high:
        return UNCERTAIN
    return None


def request_rows(session: pd.DataFrame, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Return the earliest `limit` requests of one time-sorted session as dicts, and how many were left out."""
    kept = session.head(limit)
    rows = [
        {
            "ts": pd.Timestamp(ts).isoformat(),
            "method": str(method),
            "path": str(path),
            "status": None if status is None or pd.isna(status) else int(status),
            "referrer": str(referrer),
            "kind": str(kind),
        }
        for ts, method, path, status, referrer, kind in zip(
            kept["ts"], kept["method"], kept["path"], kept["status"], kept["referrer"], kept["kind"], strict=True
        )
    ]
    return rows, len(session) - len(kept)


def split_reasons(text: Any) -> list[str]:
    """Split the `top_features` text of a score table into one reason per entry."""
    if not isinstance(text, str) or not text.strip():
        return []
    return [part.strip() for part in text.split(REASON_SEPARATOR) if part.strip()]


def format_reason(reason: Mapping[str, Any]) -> str:
    """Render one reason dict (feature, text, value, contribution) as a line of text."""
    value = reason.get("value")
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    value_text = "n/a" if missing else f"{value:.3g}"
    contribution = reason.get("contribution")
    suffix = "" if contribution is None else f" (+{float(contribution):.2f})"
    return f"{reason.get('text', reason.get('feature', '?'))} = {value_text}{suffix}"


def pick_scored_sessions(scores: pd.DataFrame, settings: ReviewSettings, summary: QueueSummary) -> pd.DataFrame:
    """Return the score rows to queue, with a `reason` column; count the rest in `summary`."""
    missing = [column for column in SCORE_COLUMNS if column not in scores.columns]
    if missing:
        raise ValueError(f"invalid score table: missing columns {missing}. Write it with `botclick score LOGS --out FILE`")
    summary.rows_read += len(scores)
    probability = pd.to_numeric(scores["bot_probability"], errors="coerce")
    invalid = probability.isna() | (probability < 0) | (probability > 1)
    summary.drop("invalid_bot_probability", int(invalid.sum()))

    valid = scores.loc[~invalid].assign(bot_probability=probability[~invalid])
    reasons = [review_reason(str(d), float(p), settings) for d, p in zip(valid["decision"], valid["bot_probability"], strict=True)]
    picked = valid.assign(reason=reasons)
    summary.not_picked += int(picked["reason"].isna().sum())
    return picked[picked["reason"].notna()]


def items_from_scores(
    scores: pd.DataFrame, events: pd.DataFrame, settings: ReviewSettings, model_version: str, origin: str
) -> tuple[list[ReviewItem], QueueSummary]:
    """Build queue items from a score table and the events of the scored sessions.

    `events` needs EVIDENCE_COLUMNS and may hold other sessions too. A picked session
    without events is left out and counted as `no_events`. A `model_version` column in
    `scores` wins over the `model_version` argument.
    """
    summary = QueueSummary()
    picked = pick_scored_sessions(scores, settings, summary)
    picked_events = events[events["session_id"].isin(set(picked["session_id"]))].sort_values(["session_id", "ts"], kind="stable")
    by_session = dict(tuple(picked_events.groupby("session_id", sort=False)))

    items = []
    for row in picked.to_dict("records"):
        session = by_session.get(str(row["session_id"]))
        if session is None:
            summary.drop("no_events")
            continue
        version = str(row.get("model_version") or model_version)
        items.append(_item(session, row, version, origin, split_reasons(row.get("top_features")), settings))
        summary.flagged += row["reason"] == FLAGGED
        summary.uncertain += row["reason"] == UNCERTAIN
    return items, summary


def _item(
    session: pd.DataFrame, row: Mapping[str, Any], model_version: str, origin: str, reasons: list[str], settings: ReviewSettings
) -> ReviewItem:
    requests, omitted = request_rows(session, settings.max_requests_per_item)
    return ReviewItem(
        session_id=str(row["session_id"]), reason=str(row["reason"]), bot_probability=float(row["bot_probability"]),
        decision=str(row["decision"]), model_version=model_version, origin=origin,
        client_id=str(session["client_id"].iloc[0]), user_agent=str(session["user_agent"].iloc[0]),
        session_start=pd.Timestamp(session["ts"].iloc[0]).isoformat(), session_end=pd.Timestamp(session["ts"].iloc[-1]).isoformat(),
        n_requests=len(session), top_reasons=reasons, requests=requests, requests_omitted=omitted,
    )  # fmt: skip


def pick_stored_sessions(clicks: pd.DataFrame, settings: ReviewSettings, summary: QueueSummary) -> pd.DataFrame:
    """Return one row per stored session to queue: its most suspicious click, with a `reason` column.

    A session is flagged when any of its clicks got a decision in `flag_decisions`. Otherwise
    it is uncertain when its highest bot probability is in the band.
    """
    summary.rows_read += len(clicks)
    top = clicks.sort_values(["bot_probability", "ts"], ascending=[False, True], kind="stable").drop_duplicates("session_id")
    any_flagged = clicks["decision"].isin(settings.flag_decisions).groupby(clicks["session_id"]).any()
    reasons = [
        FLAGGED if any_flagged[sid] else review_reason("", float(p), settings)
        for sid, p in zip(top["session_id"], top["bot_probability"], strict=True)
    ]
    picked = top.assign(reason=reasons)
    summary.not_picked += int(picked["reason"].isna().sum())
    return picked[picked["reason"].notna()]


def items_from_clicks(
    clicks: pd.DataFrame, settings: ReviewSettings, origin: str, explain: Explainer
) -> tuple[list[ReviewItem], QueueSummary]:
    """Build queue items from stored clicks (click store rows with a `kind` column).

    `explain(session, click)` returns the reason lines of the session's most suspicious
    click, given the session's clicks in time order.
    """
    summary = QueueSummary()
    picked = pick_stored_sessions(clicks, settings, summary)
    picked_clicks = clicks[clicks["session_id"].isin(set(picked["session_id"]))].sort_values(["session_id", "ts"], kind="stable")
    by_session = dict(tuple(picked_clicks.groupby("session_id", sort=False)))

    items = []
    for row in picked.to_dict("records"):
        session_id = str(row["session_id"])
        session = by_session[session_id]
        items.append(_item(session, row, str(row["model_version"]), origin, explain(session, row), settings))
        summary.flagged += row["reason"] == FLAGGED
        summary.uncertain += row["reason"] == UNCERTAIN
    return items, summary


def clicks_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Return click store rows as a frame with UTC `ts`; empty rows give an empty frame with the columns."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return pd.DataFrame(columns=[*EVIDENCE_COLUMNS, "bot_probability", "decision", "model_version"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame
