"""Time-based train/valid/test split of sessions.

Each source (site) is split on its own timeline, because the logs of two sites may be
years apart and one global cut would put a whole site in one set. Within a source,
sessions are ordered by start time and cut at the configured fractions. A session
belongs to the set in which it starts, so it never spans two sets, and sessions that
start within `gap_s` after a cut are dropped, so the earlier set's sessions cannot run on
into the next one unseen (the delay gap).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

TRAIN, VALID, TEST, DROPPED = "train", "valid", "test", "gap"


def _cut_times(starts: np.ndarray, train_fraction: float, valid_fraction: float) -> tuple[float, float]:
    """Return the start times at which valid and test begin, for sorted `starts`."""
    n = len(starts)
    valid_at = min(int(n * train_fraction), n - 1)
    test_at = min(int(n * (train_fraction + valid_fraction)), n - 1)
    return float(starts[valid_at]), float(starts[test_at])


def assign_split(
    sessions: pd.DataFrame, train_fraction: float, valid_fraction: float, gap_s: float
) -> pd.Series:
    """Return the set of each session ("train", "valid", "test" or "gap"), indexed like `sessions`.

    `sessions` needs `source` and `start_s` (session start, epoch seconds).
    """
    if not 0 < train_fraction < 1 or not 0 < valid_fraction < 1 or train_fraction + valid_fraction >= 1:
        raise ValueError(
            f"invalid split fractions train={train_fraction}, valid={valid_fraction}: "
            "each must be in (0, 1) and their sum below 1"
        )

    split = pd.Series(TRAIN, index=sessions.index, dtype="object")
    for source, group in sessions.groupby("source", sort=True):
        starts = np.sort(group["start_s"].to_numpy())
        valid_cut, test_cut = _cut_times(starts, train_fraction, valid_fraction)
        start = group["start_s"]
        split[group.index[start >= valid_cut]] = VALID
        split[group.index[start >= test_cut]] = TEST
        in_gap = ((start >= valid_cut) & (start < valid_cut + gap_s)) | (
            (start >= test_cut) & (start < test_cut + gap_s)
        )
        split[group.index[in_gap]] = DROPPED
        logger.info("split %s: cuts at %.0f and %.0f; %s", source, valid_cut, test_cut, split[group.index].value_counts().to_dict())
    return split
