"""Point-in-time session features, computed incrementally.

`SessionFeatureState.update` takes a session's requests one at a time, in time order,
and returns the feature vector as of that request. The vector covers the request itself and the
earlier ones, never later ones. The batch pipeline (`src/features/featurize.py`) and the
scoring service run this same class, so training and serving features are identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import urlsplit

from omegaconf import DictConfig

from src.features.request_kind import AFFILIATE, ASSET, FEED, OTHER, PAGE, ROBOTS
from src.features.user_agent import user_agent_features

SECONDS_PER_HOUR = 3600
HOURS_PER_DAY = 24


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """One request, as the feature code reads it; `ts` is seconds since the epoch, UTC."""

    ts: float
    method: str
    path: str
    protocol: str
    status: int | None
    bytes: int | None
    referrer: str
    user_agent: str
    kind: str


@dataclass(frozen=True)
class FeatureSettings:
    """Feature names in model column order, and the constants the formulas use."""

    names: tuple[str, ...]
    gap_cap_s: float
    rate_floor_s: float

    @classmethod
    def from_config(cls, features_cfg: DictConfig) -> "FeatureSettings":
        """Read `features` from the config."""
        return cls(
            names=tuple(features_cfg.names),
            gap_cap_s=float(features_cfg.gap_cap_s),
            rate_floor_s=float(features_cfg.rate_floor_s),
        )


def _bare_path(url_or_path: str) -> str:
    """Return the path of a URL or request target without query or fragment."""
    if url_or_path.startswith("/"):
        return url_or_path.split("?", 1)[0].split("#", 1)[0]
    try:
        return urlsplit(url_or_path).path or "/"
    except ValueError:
        return ""


class SessionFeatureState:
    """Running aggregates of one session; `update` adds a request and returns its features."""

    def __init__(self, settings: FeatureSettings) -> None:
        self._settings = settings
        self.n = 0
        self.first_ts = 0.0
        self.last_ts = 0.0
        self._gap_count = 0
        self._gap_mean = 0.0
        self._gap_m2 = 0.0
        self._gap_min = math.inf
        self._gap_max = 0.0
        self._gap_last = math.nan
        self._kinds = dict.fromkeys((PAGE, ASSET, FEED, ROBOTS, AFFILIATE, OTHER), 0)
        self._referrer_empty = 0
        self._referrer_session_path = 0
        self._errors = 0
        self._not_found = 0
        self._redirects = 0
        self._methods = {"GET": 0, "HEAD": 0, "POST": 0}
        self._http10 = 0
        self._http2 = 0
        self._paths: set[str] = set()
        self._depth_sum = 0
        self._queries = 0
        self._log_bytes_sum = 0.0
        self._ua: dict[str, float] = {}

    def update(self, event: RequestEvent) -> list[float]:
        """Add one request (not earlier than the previous one) and return the feature vector."""
        self.add(event)
        values = self.current_features(event)
        return [values[name] for name in self._settings.names]

    def add(self, event: RequestEvent) -> None:
        """Add one request to the aggregates without building a feature vector."""
        self._add_timing(event.ts)
        self._add_request(event)

    def _add_timing(self, ts: float) -> None:
        if self.n == 0:
            self.first_ts = ts
        else:
            gap = min(ts - self.last_ts, self._settings.gap_cap_s)
            self._gap_count += 1
            delta = gap - self._gap_mean
            self._gap_mean += delta / self._gap_count
            self._gap_m2 += delta * (gap - self._gap_mean)
            self._gap_min = min(self._gap_min, gap)
            self._gap_max = max(self._gap_max, gap)
            self._gap_last = gap
        self.last_ts = ts
        self.n += 1

    def _add_request(self, event: RequestEvent) -> None:
        self._kinds[event.kind if event.kind in self._kinds else OTHER] += 1
        self._add_referrer(event.referrer)
        self._add_status(event.status)
        method = event.method.upper()
        if method in self._methods:
            self._methods[method] += 1
        self._http10 += event.protocol == "HTTP/1.0"
        self._http2 += event.protocol.startswith(("HTTP/2", "HTTP/3"))

        path = _bare_path(event.path)
        self._paths.add(path)
        self._depth_sum += path.count("/")
        self._queries += "?" in event.path
        self._log_bytes_sum += math.log1p(max(event.bytes or 0, 0))
        if not self._ua:
            self._ua = user_agent_features(event.user_agent)

    def _add_referrer(self, referrer: str) -> None:
        if referrer in ("", "-"):
            self._referrer_empty += 1
        elif _bare_path(referrer) in self._paths:
            self._referrer_session_path += 1

    def _add_status(self, status: int | None) -> None:
        if status is None:
            return
        self._errors += status >= 400
        self._not_found += status == 404
        self._redirects += 300 <= status < 400

    def current_features(self, event: RequestEvent) -> dict[str, float]:
        """Return every feature by name, as of the last added request `event`."""
        n = float(self.n)
        duration = self.last_ts - self.first_ts
        has_gaps = self._gap_count > 0
        gap_std = math.sqrt(self._gap_m2 / self._gap_count) if has_gaps else math.nan
        referrer_other = self.n - self._referrer_empty - self._referrer_session_path
        other_methods = self.n - sum(self._methods.values())
        values = {
            "n_requests": n,
            "session_duration_s": duration,
            "request_rate_per_min": 60.0 * n / max(duration, self._settings.rate_floor_s),
            "gap_mean_s": self._gap_mean if has_gaps else math.nan,
            "gap_std_s": gap_std,
            "gap_min_s": self._gap_min if has_gaps else math.nan,
            "gap_max_s": self._gap_max if has_gaps else math.nan,
            "gap_cv": gap_std / self._gap_mean if has_gaps and self._gap_mean > 0 else math.nan,
            "gap_last_s": self._gap_last,
            "share_page": self._kinds[PAGE] / n,
            "share_asset": self._kinds[ASSET] / n,
            "share_feed": self._kinds[FEED] / n,
            "share_affiliate": self._kinds[AFFILIATE] / n,
            "share_other_kind": self._kinds[OTHER] / n,
            "robots_seen": float(self._kinds[ROBOTS] > 0),
            "share_referrer_empty": self._referrer_empty / n,
            "share_referrer_session_path": self._referrer_session_path / n,
            "share_referrer_other": referrer_other / n,
            "share_error_status": self._errors / n,
            "share_not_found": self._not_found / n,
            "share_redirect": self._redirects / n,
            "share_get": self._methods["GET"] / n,
            "share_head": self._methods["HEAD"] / n,
            "share_post": self._methods["POST"] / n,
            "share_other_method": other_methods / n,
            "share_http10": self._http10 / n,
            "share_http2": self._http2 / n,
            "unique_path_ratio": len(self._paths) / n,
            "path_depth_mean": self._depth_sum / n,
            "share_query": self._queries / n,
            "bytes_log_mean": self._log_bytes_sum / n,
            "hour_utc": float(int(event.ts // SECONDS_PER_HOUR) % HOURS_PER_DAY),
        }
        values.update(self._ua)
        return values


def check_feature_names(settings: FeatureSettings) -> None:
    """Raise ValueError unless the configured names are exactly the features the code computes."""
    probe = SessionFeatureState(settings)
    event = RequestEvent(0.0, "GET", "/", "HTTP/1.1", 200, 0, "", "", PAGE)
    probe.add(event)
    computed = set(probe.current_features(event))
    configured: Sequence[str] = settings.names
    unknown = sorted(set(configured) - computed)
    missing = sorted(computed - set(configured))
    if unknown or missing or len(set(configured)) != len(configured):
        raise ValueError(
            f"features.names in conf/features does not match the feature code: unknown {unknown}, "
            f"not listed {missing}. List each computed feature exactly once."
        )
