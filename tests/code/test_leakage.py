"""Leakage tests: features see no future request, no label rule, and the split keeps time order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from src.features.featurize import featurize_events
from src.features.masking import mask_user_agents
from src.features.request_kind import RequestKindClassifier
from src.features.session_features import FeatureSettings
from src.features.sessions import assign_sessions, epoch_seconds
from src.train.split import DROPPED, TEST, TRAIN, VALID, assign_split

CRAWLER_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BROWSER_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"


def make_events(cfg, rows: list[tuple[str, str, float, str, str]]) -> pd.DataFrame:
    """Build preprocessed events from (client, user agent, seconds, method, path) tuples."""
    classifier = RequestKindClassifier.from_config(cfg.data.preprocess)
    frame = pd.DataFrame(
        {
            "ts": [pd.Timestamp("2026-11-02", tz="UTC") + pd.Timedelta(seconds=s) for _, _, s, _, _ in rows],
            "client_id": [c for c, _, _, _, _ in rows],
            "prefix_id": [c[:4] for c, _, _, _, _ in rows],
            "method": [m for _, _, _, m, _ in rows],
            "path": [p for _, _, _, _, p in rows],
            "protocol": "HTTP/1.1",
            "status": pd.array([200] * len(rows), dtype="Int16"),
            "bytes": pd.array([512] * len(rows), dtype="Int64"),
            "referrer": "",
            "user_agent": [ua for _, ua, _, _, _ in rows],
            "source": "test/access.log",
            "line_no": range(1, len(rows) + 1),
            "source_format": "combined",
        }
    ).sort_values("ts", kind="stable")
    frame["kind"] = [classifier.classify(p) for p in frame["path"]]
    return assign_sessions(frame, cfg.data.preprocess.inactivity_gap_s).reset_index(drop=True)


@pytest.fixture()
def events(cfg) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for client in range(12):
        ua = CRAWLER_UA if client % 3 == 0 else BROWSER_UA
        t = float(client * 50)
        for i in range(int(rng.integers(2, 15))):
            t += float(rng.exponential(40.0))
            path = ["/", "/p/1", "/style.css", "/go/shop/1", "/robots.txt", "/feed/"][int(rng.integers(0, 6))]
            rows.append((f"client{client:02d}", ua, t, "GET", f"{path}?q={i}" if i % 4 == 0 else path))
    return make_events(cfg, rows)


def test_features_ignore_future_requests(cfg, events):
    """Dropping every request after time t leaves each earlier row's features unchanged."""
    settings = FeatureSettings.from_config(cfg.features)
    full = featurize_events(events, settings)
    seconds = epoch_seconds(events["ts"])
    cut = float(seconds.median())
    early = events[seconds <= cut]
    truncated = featurize_events(early, settings)
    pd.testing.assert_frame_equal(full.loc[early.index], truncated)


@pytest.mark.parametrize(
    ("listed", "unlisted"),
    [
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
         "Mozilla/5.0 (compatible; Gooqlexyz/2.1; +http://www.google.com/xyz.html)"),
        ("curl/7.68.0", "cdrl/7.68.0"),
        ("Wget/1.20.3", "Wqet/1.20.3"),
    ],
)
def test_features_blind_to_crawler_list(cfg, listed, unlisted):
    """Two user agents of the same shape give the same features, whether or not crawlerdetect lists one."""
    from src.train.baselines import is_declared_crawler

    assert is_declared_crawler(listed)
    assert not is_declared_crawler(unlisted)
    settings = FeatureSettings.from_config(cfg.features)
    rows = [("c1", listed, 0.0, "GET", "/"), ("c1", listed, 5.0, "GET", "/p/1")]
    first = featurize_events(make_events(cfg, rows), settings)
    second = featurize_events(make_events(cfg, [(c, unlisted, t, m, p) for c, _, t, m, p in rows]), settings)
    names = list(cfg.features.names)
    pd.testing.assert_frame_equal(first[names], second[names])


def test_features_blind_to_honeypot(cfg):
    """A request to a honeypot path looks like any other page request to the features."""
    settings = FeatureSettings.from_config(cfg.features)
    trap = [("c1", BROWSER_UA, 0.0, "GET", "/"), ("c1", BROWSER_UA, 5.0, "GET", "/trap/x")]
    plain = [("c1", BROWSER_UA, 0.0, "GET", "/"), ("c1", BROWSER_UA, 5.0, "GET", "/tarp/x")]
    names = list(cfg.features.names)
    pd.testing.assert_frame_equal(
        featurize_events(make_events(cfg, trap), settings)[names],
        featurize_events(make_events(cfg, plain), settings)[names],
    )


def test_masking_equals_refeaturizing(cfg, events):
    """Masking feature columns equals re-running featurize on events with the new user agent."""
    settings = FeatureSettings.from_config(cfg.features)
    agents = list(cfg.evaluate.browser_user_agents)
    crawler_sessions = set(events.loc[events["user_agent"] == CRAWLER_UA, "session_id"])
    masked_columns = mask_user_agents(featurize_events(events, settings), crawler_sessions, agents)

    from src.features.masking import browser_agent_for

    relabelled = events.copy()
    rows = relabelled["session_id"].isin(crawler_sessions)
    relabelled.loc[rows, "user_agent"] = relabelled.loc[rows, "session_id"].map(lambda s: browser_agent_for(s, agents))
    refeaturized = featurize_events(relabelled, settings)
    pd.testing.assert_frame_equal(masked_columns, refeaturized)


def test_split_keeps_time_order(cfg):
    starts = pd.DataFrame({"source": ["a"] * 100 + ["b"] * 50, "start_s": list(range(0, 100_000, 1000)) + list(range(0, 500_000, 10_000))})
    split = assign_split(starts, 0.6, 0.2, gap_s=1500)
    for source, group in starts.groupby("source"):
        parts = split[group.index]
        latest_train = group.loc[parts == TRAIN, "start_s"].max()
        assert latest_train < group.loc[parts == VALID, "start_s"].min()
        assert group.loc[parts == VALID, "start_s"].max() < group.loc[parts == TEST, "start_s"].min()
    assert (split == DROPPED).sum() > 0
    assert set(split.unique()) == {TRAIN, VALID, TEST, DROPPED}


def test_split_rejects_bad_fractions():
    starts = pd.DataFrame({"source": ["a"], "start_s": [0.0]})
    with pytest.raises(ValueError, match="fractions"):
        assign_split(starts, 0.8, 0.3, gap_s=0)
