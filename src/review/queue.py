"""The review queue: one SQLite row per session waiting for a human label, with its evidence.

A session leaves the queue's pending list when reviews.csv has a row for it, so a
review started in the terminal can go on in the browser and the other way round.
"Skip" is stored here, never in reviews.csv: a skipped session comes back only when
skipped sessions are asked for.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FLAGGED = "flagged"
UNCERTAIN = "uncertain"
# Flagged sessions are reviewed before uncertain ones.
PRIORITY = {FLAGGED: 0, UNCERTAIN: 1}
# Seconds a writer waits for another process's lock on the queue file.
LOCK_TIMEOUT_S = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    session_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    priority INTEGER NOT NULL,
    bot_probability REAL NOT NULL,
    decision TEXT NOT NULL,
    model_version TEXT NOT NULL,
    origin TEXT NOT NULL,
    queued_at TEXT NOT NULL,
    evidence TEXT NOT NULL,
    skipped_at TEXT,
    skipped_by TEXT
)
"""
UPSERT = """
INSERT INTO items (session_id, reason, priority, bot_probability, decision, model_version, origin, queued_at, evidence)
VALUES (:session_id, :reason, :priority, :bot_probability, :decision, :model_version, :origin, :queued_at, :evidence)
ON CONFLICT(session_id) DO UPDATE SET
    reason = excluded.reason, priority = excluded.priority, bot_probability = excluded.bot_probability,
    decision = excluded.decision, model_version = excluded.model_version, origin = excluded.origin,
    queued_at = excluded.queued_at, evidence = excluded.evidence
"""
ORDER = "ORDER BY priority, bot_probability DESC, session_id"


@dataclass
class ReviewItem:
    """One session to review and the evidence shown to the reviewer.

    `requests` holds the earliest requests of the session as dicts with ts (ISO 8601
    UTC), method, path, status, referrer and kind; `requests_omitted` counts the rest.
    `client_id` is the collect stage's IP pseudonym: no raw address is ever stored.
    """

    session_id: str
    reason: str
    bot_probability: float
    decision: str
    model_version: str
    origin: str
    client_id: str
    user_agent: str
    session_start: str
    session_end: str
    n_requests: int
    top_reasons: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    requests_omitted: int = 0
    queued_at: str = ""
    skipped_at: str | None = None

    def to_row(self) -> dict[str, Any]:
        """Return the item as the parameters of UPSERT."""
        evidence = {
            key: value for key, value in asdict(self).items()
            if key in ("client_id", "user_agent", "session_start", "session_end", "n_requests",
                       "top_reasons", "requests", "requests_omitted")
        }  # fmt: skip
        return {
            "session_id": self.session_id, "reason": self.reason, "priority": PRIORITY[self.reason],
            "bot_probability": float(self.bot_probability), "decision": self.decision,
            "model_version": self.model_version, "origin": self.origin,
            "queued_at": self.queued_at or utc_now(), "evidence": json.dumps(evidence, ensure_ascii=False),
        }  # fmt: skip

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ReviewItem:
        """Rebuild an item from a queue row."""
        evidence = json.loads(row["evidence"])
        return cls(
            session_id=row["session_id"], reason=row["reason"], bot_probability=float(row["bot_probability"]),
            decision=row["decision"], model_version=row["model_version"], origin=row["origin"],
            queued_at=row["queued_at"], skipped_at=row["skipped_at"], **evidence,
        )


def utc_now() -> str:
    """Return the current UTC time as ISO 8601 with seconds, e.g. 2026-12-04T20:41:47+00:00."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class ReviewQueue:
    """The queue file. Each call opens its own connection, so threads and processes can share it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.execute(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S)) as connection:
            connection.row_factory = sqlite3.Row
            with connection:
                yield connection

    def add(self, items: Iterable[ReviewItem]) -> int:
        """Insert items, or refresh the score and evidence of sessions already queued; return the count.

        A refreshed session keeps its skip mark.
        """
        rows = [item.to_row() for item in items]
        with self._connect() as connection:
            connection.executemany(UPSERT, rows)
        logger.info("queued %d sessions for review in %s", len(rows), self.path)
        return len(rows)

    def get(self, session_id: str) -> ReviewItem | None:
        """Return the queued item of one session, or None when it is not queued."""
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM items WHERE session_id = ?", (session_id,)).fetchone()
        return None if row is None else ReviewItem.from_row(row)

    def pending(self, reviewed: set[str], include_skipped: bool = False) -> Iterator[ReviewItem]:
        """Yield queued items in review order, leaving out reviewed sessions and, unless asked, skipped ones."""
        where = "" if include_skipped else "WHERE skipped_at IS NULL"
        with self._connect() as connection:
            rows = connection.execute(f"SELECT * FROM items {where} {ORDER}").fetchall()
        for row in rows:
            if row["session_id"] not in reviewed:
                yield ReviewItem.from_row(row)

    def next_item(self, reviewed: set[str], include_skipped: bool = False) -> ReviewItem | None:
        """Return the first pending item, or None when nothing is left to review."""
        return next(self.pending(reviewed, include_skipped), None)

    def skip(self, session_id: str, reviewer: str) -> None:
        """Mark a queued session as skipped; raises KeyError when it is not queued."""
        with self._connect() as connection:
            changed = connection.execute(
                "UPDATE items SET skipped_at = ?, skipped_by = ? WHERE session_id = ?", (utc_now(), reviewer, session_id)
            ).rowcount
        if not changed:
            raise KeyError(f"session {session_id!r} is not in the review queue {self.path}")

    def clear_skips(self) -> int:
        """Remove every skip mark, so skipped sessions are pending again; return how many."""
        with self._connect() as connection:
            return connection.execute("UPDATE items SET skipped_at = NULL, skipped_by = NULL WHERE skipped_at IS NOT NULL").rowcount

    def counts(self, reviewed: set[str]) -> dict[str, int]:
        """Count queued sessions: total, reviewed, skipped (not reviewed) and pending."""
        with self._connect() as connection:
            rows = connection.execute("SELECT session_id, skipped_at FROM items").fetchall()
        done = sum(1 for row in rows if row["session_id"] in reviewed)
        skipped = sum(1 for row in rows if row["session_id"] not in reviewed and row["skipped_at"] is not None)
        return {"queued": len(rows), "reviewed": done, "skipped": skipped, "pending": len(rows) - done - skipped}
