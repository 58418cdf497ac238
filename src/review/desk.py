"""The review actions shared by the terminal and the web page: next item, label, skip."""

from __future__ import annotations

import logging
from pathlib import Path

from src.review.queue import ReviewItem, ReviewQueue
from src.review.reviews import ReviewRecord, append_review, make_record, reviewed_session_ids
from src.review.settings import ReviewSettings

logger = logging.getLogger(__name__)

SKIP = "skip"


class ReviewDesk:
    """One reviewer working through the queue; labels go to reviews.csv, skips to the queue."""

    def __init__(self, settings: ReviewSettings, reviewer: str, include_skipped: bool = False) -> None:
        self.settings = settings
        self.reviewer = reviewer
        self.include_skipped = include_skipped
        self.queue = ReviewQueue(settings.queue_path)
        self.reviews_path: Path = settings.reviews_path

    @property
    def labels(self) -> list[str]:
        """Review labels that reviews.csv accepts, e.g. ["bot", "human"]."""
        return sorted(self.settings.review_labels)

    def reviewed(self) -> set[str]:
        """Return the sessions that already have a row in reviews.csv."""
        return reviewed_session_ids(self.reviews_path)

    def next_item(self, exclude: set[str] | frozenset[str] = frozenset()) -> ReviewItem | None:
        """Return the next session to review that is not in `exclude`, or None when none is left."""
        return self.queue.next_item(self.reviewed() | set(exclude), self.include_skipped)

    def progress(self) -> dict[str, int]:
        """Count queued, reviewed, skipped and pending sessions."""
        return self.queue.counts(self.reviewed())

    def label(self, session_id: str, label: str, note: str = "") -> ReviewRecord:
        """Append a review of a queued session to reviews.csv and return the row written.

        Raises KeyError when the session is not queued and ValueError for an unknown label.
        A session reviewed before gets a second row; the labels stage keeps the latest.
        """
        item = self.queue.get(session_id)
        if item is None:
            raise KeyError(f"session {session_id!r} is not in the review queue {self.queue.path}")
        if len(note) > self.settings.max_note_chars:
            raise ValueError(f"note has {len(note)} characters; the maximum is {self.settings.max_note_chars} (review.max_note_chars)")
        record = make_record(session_id, label, self.reviewer, item.model_version, note, self.settings.review_labels)
        append_review(self.reviews_path, record)
        return record

    def skip(self, session_id: str) -> None:
        """Remember in the queue that this reviewer skipped the session."""
        self.queue.skip(session_id, self.reviewer)
        logger.info("session %s skipped by %s", session_id, self.reviewer)
