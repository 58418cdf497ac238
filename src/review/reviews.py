"""Append human review labels to reviews.csv, the file the labels stage reads.

Rows are only ever appended, under an exclusive `fcntl` lock on the file, so the
terminal and the web page can write at the same time and no earlier row is rewritten.
"""

from __future__ import annotations

import csv
import fcntl
import io
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

from src.data.schema import REVIEW_COLUMNS
from src.review.queue import utc_now

logger = logging.getLogger(__name__)

HEADER = ",".join(REVIEW_COLUMNS)


@dataclass(frozen=True)
class ReviewRecord:
    """One row of reviews.csv; the fields are REVIEW_COLUMNS in order."""

    session_id: str
    label: str
    reviewer: str
    reviewed_at: str
    model_version: str
    note: str


def single_line(text: str) -> str:
    """Return `text` on one line: control characters become spaces and outer spaces go."""
    return "".join(" " if ch in "\r\n\t\v\f\x00" or ord(ch) < 32 else ch for ch in text).strip()


def make_record(
    session_id: str, label: str, reviewer: str, model_version: str, note: str, review_labels: Mapping[str, int]
) -> ReviewRecord:
    """Build a checked record stamped with the current UTC time.

    Raises ValueError for an empty session id or reviewer and for a label that is not a
    key of `labels.review_labels`.
    """
    if label not in review_labels:
        raise ValueError(f"invalid review label {label!r}: expected one of {sorted(review_labels)} (labels.review_labels)")
    clean_session = single_line(session_id)
    if not clean_session:
        raise ValueError("empty session_id: a review needs the id of the queued session")
    clean_reviewer = single_line(reviewer)
    if not clean_reviewer:
        raise ValueError("empty reviewer name: pass --reviewer or set the reviewer environment variable")
    return ReviewRecord(clean_session, label, clean_reviewer, utc_now(), single_line(model_version), single_line(note))


def reviewed_session_ids(path: Path) -> set[str]:
    """Return the session ids that have at least one row in reviews.csv (empty when the file is missing)."""
    if not path.is_file():
        return set()
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            return set()
        if "session_id" not in reader.fieldnames:
            raise ValueError(f"invalid reviews file {path}: no session_id column. Expected the header {HEADER}")
        return {row["session_id"].strip() for row in reader if row.get("session_id")}


def append_review(path: Path, record: ReviewRecord) -> None:
    """Append one row to reviews.csv, writing the header first when the file is new or empty.

    Raises ValueError when the existing header is not REVIEW_COLUMNS, so no row lands
    under the wrong column.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8", newline="") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            _write_locked(handle, path, record)
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    logger.info("review of session %s as %s by %s appended to %s", record.session_id, record.label, record.reviewer, path)


def _write_locked(handle: io.TextIOWrapper, path: Path, record: ReviewRecord) -> None:
    handle.seek(0)
    existing = handle.read()
    if existing and not existing.strip():
        raise ValueError(f"invalid reviews file {path}: it has only blank lines. Replace them with the header {HEADER}")
    if existing:
        header = existing.splitlines()[0].strip()
        if header != HEADER:
            raise ValueError(f"invalid reviews file {path}: header {header!r}, expected {HEADER!r}. Fix the header line")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if not existing:
        writer.writerow(REVIEW_COLUMNS)
    elif not existing.endswith("\n"):
        buffer.write("\n")
    writer.writerow([asdict(record)[column] for column in REVIEW_COLUMNS])

    handle.seek(0, os.SEEK_END)
    handle.write(buffer.getvalue())
    handle.flush()
    os.fsync(handle.fileno())
