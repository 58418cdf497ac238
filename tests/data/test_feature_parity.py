"""Batch and incremental features agree on the real logs.

The batch path groups preprocessed events by session; the online path (scoring service)
sessionizes request by request with `OnlineSessionTracker`. Both must give the same
session ids and feature values for every request.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from src.features.featurize import featurize_events, request_events
from src.features.online import OnlineSessionTracker
from src.features.session_features import FeatureSettings


def replay_online(events: pd.DataFrame, settings: FeatureSettings, gap_s: float, max_clients: int) -> tuple[list[str], np.ndarray]:
    tracker = OnlineSessionTracker(settings, gap_s, max_clients)
    session_ids, vectors = [], []
    for key, request in zip(events["client_key"], request_events(events), strict=True):
        sid, vector = tracker.update(key, request)
        session_ids.append(sid)
        vectors.append(vector)
    return session_ids, np.asarray(vectors, dtype=np.float64)


def test_online_equals_batch_on_real_logs(cfg, real_events):
    settings = FeatureSettings.from_config(cfg.features)
    gap_s = float(cfg.data.preprocess.inactivity_gap_s)
    batch = featurize_events(real_events, settings)

    session_ids, online = replay_online(real_events, settings, gap_s, int(cfg.features.online_max_clients))

    assert len(real_events) > 19_000
    assert session_ids == real_events["session_id"].tolist()
    np.testing.assert_array_equal(online, batch[list(settings.names)].to_numpy(dtype=np.float64))


def test_capacity_eviction_is_counted(cfg, real_events):
    """With room for a single client, interleaved clients lose their sessions, and the tracker counts it."""
    settings = FeatureSettings.from_config(cfg.features)
    tracker = OnlineSessionTracker(settings, float(cfg.data.preprocess.inactivity_gap_s), max_clients=1)
    head = real_events.head(500)
    for key, request in zip(head["client_key"], request_events(head), strict=True):
        tracker.update(key, request)
    assert len(tracker) == 1
    assert tracker.evicted_for_capacity > 0
