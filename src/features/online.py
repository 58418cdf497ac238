"""Incremental sessionization and features for one request at a time (scoring service).

Applies the same session rule (`starts_new_session`) and the same feature code
(`SessionFeatureState`) as the batch pipeline, so a replayed log yields the batch values.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, replace

from src.features.session_features import FeatureSettings, RequestEvent, SessionFeatureState
from src.features.sessions import session_id, starts_new_session

logger = logging.getLogger(__name__)


@dataclass
class _ClientSession:
    session_id: str
    state: SessionFeatureState


class OnlineSessionTracker:
    """Per-client session state, bounded by client count and idle time.

    Clients idle for longer than the inactivity gap are dropped, which changes no result.
    When more than `max_clients` are active, the least recently seen client is dropped,
    and its next request starts a new session: only then do online values differ from batch.
    """

    def __init__(self, settings: FeatureSettings, inactivity_gap_s: float, max_clients: int) -> None:
        if max_clients < 1:
            raise ValueError(f"max_clients must be at least 1, got {max_clients}")
        self._settings = settings
        self._gap_s = inactivity_gap_s
        self._max_clients = max_clients
        self._clients: OrderedDict[str, _ClientSession] = OrderedDict()
        self._latest_ts = float("-inf")
        self.evicted_for_capacity = 0

    def __len__(self) -> int:
        return len(self._clients)

    def update(self, key: str, event: RequestEvent) -> tuple[str, list[float]]:
        """Add a request of client `key` and return its session id and feature vector.

        A request older than its client's previous one is treated as arriving at the
        previous request's time, since the session aggregates only move forward.
        """
        current = self._clients.get(key)
        if current is not None and event.ts < current.state.last_ts:
            event = replace(event, ts=current.state.last_ts)
        if current is None or starts_new_session(current.state.last_ts, event.ts, self._gap_s):
            current = _ClientSession(session_id(key, event.ts), SessionFeatureState(self._settings))
            self._clients[key] = current
        self._clients.move_to_end(key)

        vector = current.state.update(event)
        self._latest_ts = max(self._latest_ts, event.ts)
        self._evict()
        return current.session_id, vector

    def _evict(self) -> None:
        while self._clients:
            oldest_key, oldest = next(iter(self._clients.items()))
            idle = self._latest_ts - oldest.state.last_ts > self._gap_s
            if not idle and len(self._clients) <= self._max_clients:
                return
            if not idle:
                self.evicted_for_capacity += 1
                logger.debug("dropped client %s over the %d-client limit", oldest_key, self._max_clients)
            del self._clients[oldest_key]
