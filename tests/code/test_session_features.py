"""Unit tests of the point-in-time session features."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from src.config import compose_config
from src.features.featurize import featurize_events
from src.features.masking import mask_user_agents
from src.features.request_kind import ASSET, PAGE, ROBOTS, RequestKindClassifier
from src.features.session_features import (
    FeatureSettings,
    RequestEvent,
    SessionFeatureState,
    check_feature_names,
)
from src.features.sessions import assign_sessions

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
BOT = "Mozilla/5.0 (compatible; ExampleBot/1.0; +http://bot.example/)"


@pytest.fixture()
def settings(cfg):
    return FeatureSettings.from_config(cfg.features)


def event(ts: float, path: str = "/", kind: str = PAGE, referrer: str = "", status: int | None = 200, ua: str = BROWSER) -> RequestEvent:
    return RequestEvent(ts, "GET", path, "HTTP/1.1", status, 1000, referrer, ua, kind)


def features_of(settings: FeatureSettings, events: list[RequestEvent]) -> dict[str, float]:
    state = SessionFeatureState(settings)
    vector: list[float] = []
    for item in events:
        vector = state.update(item)
    return dict(zip(settings.names, vector, strict=True))


def test_configured_names_match_code(settings):
    check_feature_names(settings)


def test_unknown_feature_name_rejected(cfg):
    broken = compose_config(["features.names=[n_requests,not_a_feature]"])
    with pytest.raises(ValueError, match="not_a_feature"):
        check_feature_names(FeatureSettings.from_config(broken.features))


def test_single_request_has_no_gap_stats(settings):
    values = features_of(settings, [event(1000.0)])
    assert values["n_requests"] == 1
    assert math.isnan(values["gap_mean_s"])
    assert values["request_rate_per_min"] == pytest.approx(1.0)


def test_gap_statistics(settings):
    values = features_of(settings, [event(0.0), event(10.0), event(30.0)])
    assert values["gap_mean_s"] == pytest.approx(15.0)
    assert values["gap_std_s"] == pytest.approx(5.0)
    assert values["gap_min_s"] == 10.0
    assert values["gap_max_s"] == 20.0
    assert values["gap_last_s"] == 20.0
    assert values["session_duration_s"] == 30.0


def test_gap_is_capped(settings):
    cap = settings.gap_cap_s
    values = features_of(settings, [event(0.0), event(cap * 3)])
    assert values["gap_max_s"] == cap


def test_kind_and_referrer_shares(settings):
    events = [
        event(0.0, "/robots.txt", ROBOTS),
        event(1.0, "/a", PAGE),
        event(2.0, "/a.css", ASSET, referrer="https://shop.example/a"),
        event(3.0, "/b", PAGE, referrer="https://elsewhere.example/x", status=404),
    ]
    values = features_of(settings, events)
    assert values["robots_seen"] == 1.0
    assert values["share_asset"] == 0.25
    assert values["share_page"] == 0.5
    assert values["share_referrer_empty"] == 0.5
    assert values["share_referrer_session_path"] == 0.25
    assert values["share_referrer_other"] == 0.25
    assert values["share_not_found"] == 0.25
    assert values["unique_path_ratio"] == 1.0


def test_referrer_to_later_page_not_counted(settings):
    """A referrer counts as in-session only when it names an earlier request."""
    values = features_of(settings, [event(0.0, "/b", referrer="https://shop.example/b")])
    assert values["share_referrer_session_path"] == 0.0


def test_missing_status_not_an_error(settings):
    values = features_of(settings, [event(0.0, status=None)])
    assert values["share_error_status"] == 0.0


def test_user_agent_structure(settings):
    bot = features_of(settings, [event(0.0, ua=BOT)])
    browser = features_of(settings, [event(0.0, ua=BROWSER)])
    empty = features_of(settings, [event(0.0, ua="")])
    assert bot["ua_has_url"] == 1.0
    assert bot["ua_has_compatible"] == 1.0
    assert browser["ua_has_url"] == 0.0
    assert browser["ua_mozilla_prefix"] == 1.0
    assert empty["ua_is_empty"] == 1.0


def test_hour_is_utc(settings):
    values = features_of(settings, [event(pd.Timestamp("2026-01-01T13:59:59Z").timestamp())])
    assert values["hour_utc"] == 13.0
