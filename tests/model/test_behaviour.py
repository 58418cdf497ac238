"""Behavioural tests of a trained model: invariance, direction and minimum functionality.

A model is trained once on a small simulation. Sessions are then built request by request
as `RequestEvent`s, turned into features by `SessionFeatureState` (the code the scoring
service runs) and scored at their last request with `predict_proba`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import xgboost as xgb
from omegaconf import DictConfig

from src.config import compose_config
from src.data.simulate import simulate
from src.features.request_kind import RequestKindClassifier
from src.features.session_features import FeatureSettings, RequestEvent, SessionFeatureState
from src.train.model_io import ModelMeta, load_model, predict_proba
from tests.helpers import run_stages, workdir_config

# 2026-11-02 14:00 UTC, inside the simulated period.
START_S = 1_793_628_000.0
SITE = "https://shop.example"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
PAGE_BYTES = 28_000
ASSET_BYTES = 40_000
PRODUCT_PAGES = [f"/reviews/tents/alpine-pro-{n}/" for n in range(60)]
PAGE_ASSETS = ["/static/css/site.css", "/static/js/vendor.js", "/static/js/site.js", "/static/img/logo.svg", "/media/products/alpine-1.jpg"]
PROBE_PATHS = ["/wp-admin/", "/.env", "/wp-login.php", "/.git/config", "/phpmyadmin/", "/xmlrpc.php", "/backup.sql", "/config.php",
               "/admin/login.php", "/.aws/credentials", "/shell.php", "/api/.env", "/server-status", "/wp-config.php.bak", "/db.sql"]
# Largest score change allowed when only the browser user agent changes.
INVARIANCE_TOLERANCE = 0.05


@dataclass
class TrainedModel:
    booster: xgb.Booster
    meta: ModelMeta
    cfg: DictConfig

    def score(self, events: Sequence[RequestEvent]) -> float:
        """Return the bot probability of a session at its last request."""
        state = SessionFeatureState(FeatureSettings.from_config(self.cfg.features))
        vector: list[float] = []
        for event in events:
            vector = state.update(event)
        return float(predict_proba(self.booster, np.asarray([vector], dtype=np.float64))[0])


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """A model trained in process on a half-size simulation, with a temp MLflow store."""
    workdir = tmp_path_factory.mktemp("behaviour")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    sim_dir = workdir / "logs/simulated"
    simulate(compose_config(), sim_dir, scale=0.5)
    cfg = workdir_config(workdir, sim_dir, [f"paths.ground_truth={sim_dir / 'ground_truth.csv'}", "evaluate.holdout_scale=0.2"])
    run_stages(cfg)
    booster, meta = load_model(workdir / "models")
    monkeypatch.undo()
    assert meta.feature_names == list(cfg.features.names)
    return TrainedModel(booster, meta, cfg)


@pytest.fixture(scope="module")
def kinds(model: TrainedModel) -> RequestKindClassifier:
    return RequestKindClassifier.from_config(model.cfg.data.preprocess)


def request(kinds: RequestKindClassifier, ts: float, path: str, *, referrer: str = "", user_agent: str = CHROME,
            status: int = 200, size: int = PAGE_BYTES, protocol: str = "HTTP/1.1", method: str = "GET") -> RequestEvent:
    return RequestEvent(ts, method, path, protocol, status, size, referrer, user_agent, kinds.classify(path))


def page_with_assets(kinds: RequestKindClassifier, ts: float, path: str, referrer: str, user_agent: str) -> list[RequestEvent]:
    """A page and the assets a browser loads for it, each asset referred by the page."""
    events = [request(kinds, ts, path, referrer=referrer, user_agent=user_agent, protocol="HTTP/2.0")]
    for i, asset in enumerate(PAGE_ASSETS, start=1):
        events.append(request(kinds, ts + 0.15 * i, asset, referrer=SITE + path, user_agent=user_agent, size=ASSET_BYTES, protocol="HTTP/2.0"))
    return events


def scraper_session(kinds: RequestKindClassifier, user_agent: str, pages: int = 40, interval_s: float = 1.2) -> list[RequestEvent]:
    """A content scraper: product pages at a steady short interval, no assets, no referrer."""
    jitter = np.random.default_rng(3).uniform(-0.3, 0.3, size=pages)
    return [request(kinds, START_S + i * interval_s + jitter[i], PRODUCT_PAGES[i], user_agent=user_agent) for i in range(pages)]


def human_session(kinds: RequestKindClassifier, user_agent: str, think_times_s: Sequence[float] = (45, 110, 30, 75)) -> list[RequestEvent]:
    """A person: lands from a search engine, reads pages 30-120 s each, the browser loads assets."""
    events = page_with_assets(kinds, START_S, "/", "https://www.google.com/", user_agent)
    ts, previous = START_S, "/"
    for i, think in enumerate(think_times_s):
        ts += think
        path = PRODUCT_PAGES[i]
        events += page_with_assets(kinds, ts, path, SITE + previous, user_agent)
        previous = path
    return events


# ------------------------------------------------------------------ invariance


@pytest.mark.parametrize("build", [scraper_session, human_session], ids=["content_scraper", "human"])
def test_browser_user_agent_swap_barely_moves_score(model: TrainedModel, kinds: RequestKindClassifier, build) -> None:
    agents = list(model.cfg.evaluate.browser_user_agents)
    scores = {agent: model.score(build(kinds, agent)) for agent in agents}
    spread = max(scores.values()) - min(scores.values())
    assert spread < INVARIANCE_TOLERANCE, f"scores per user agent: {scores}"


# ------------------------------------------------------------------ direction


def fast_bare_pages(kinds: RequestKindClassifier, gaps_s: Sequence[float], with_assets: bool) -> list[RequestEvent]:
    """Twelve pages after the given gaps, without referrer, optionally each with its assets."""
    events: list[RequestEvent] = []
    ts = START_S
    for i in range(len(gaps_s) + 1):
        path = PRODUCT_PAGES[i]
        if with_assets:
            events += page_with_assets(kinds, ts, path, SITE + PRODUCT_PAGES[i - 1] if i else "", CHROME)
        else:
            events.append(request(kinds, ts, path))
        ts += gaps_s[i] if i < len(gaps_s) else 0
    return events


FAST_GAPS = [2.0] * 11
THINK_GAPS = [45, 110, 30, 75, 60, 90, 40, 120, 35, 80, 55]


def test_assets_and_think_times_lower_score(model: TrainedModel, kinds: RequestKindClassifier) -> None:
    bare = model.score(fast_bare_pages(kinds, FAST_GAPS, with_assets=False))
    browsed = model.score(fast_bare_pages(kinds, THINK_GAPS, with_assets=True))
    assert browsed < bare, f"bare fast pages {bare:.4f}, with assets and think times {browsed:.4f}"


def test_assets_alone_lower_score(model: TrainedModel, kinds: RequestKindClassifier) -> None:
    bare = model.score(fast_bare_pages(kinds, THINK_GAPS, with_assets=False))
    with_assets = model.score(fast_bare_pages(kinds, THINK_GAPS, with_assets=True))
    assert with_assets < bare, f"pages without assets {bare:.4f}, with assets {with_assets:.4f}"


def test_think_times_alone_lower_score(model: TrainedModel, kinds: RequestKindClassifier) -> None:
    fast = model.score(fast_bare_pages(kinds, FAST_GAPS, with_assets=True))
    slow = model.score(fast_bare_pages(kinds, THINK_GAPS, with_assets=True))
    assert slow < fast, f"2 s between pages {fast:.4f}, 30-120 s between pages {slow:.4f}"


# ------------------------------------------------------------------ minimum functionality


def page_burst(kinds: RequestKindClassifier) -> list[RequestEvent]:
    """Fifty page requests in ten seconds, no assets, no referrer, a browser user agent."""
    return [request(kinds, START_S + i * 0.2, PRODUCT_PAGES[i]) for i in range(50)]


def not_found_burst(kinds: RequestKindClassifier) -> list[RequestEvent]:
    """Probes of admin and secret paths, all 404, half a second apart."""
    return [request(kinds, START_S + i * 0.5, path, status=404, size=196) for i, path in enumerate(PROBE_PATHS)]


@pytest.mark.parametrize("build", [page_burst, not_found_burst], ids=["page_burst", "not_found_burst"])
def test_obvious_bot_above_threshold(model: TrainedModel, kinds: RequestKindClassifier, build) -> None:
    score = model.score(build(kinds))
    assert score >= model.meta.threshold, f"score {score:.4f} below the threshold {model.meta.threshold:.4f}"


@pytest.mark.parametrize("agent_index", [0, 1, 2, 3])
def test_obvious_human_below_threshold(model: TrainedModel, kinds: RequestKindClassifier, agent_index: int) -> None:
    agent = list(model.cfg.evaluate.browser_user_agents)[agent_index]
    score = model.score(human_session(kinds, agent))
    assert score < model.meta.threshold, f"score {score:.4f} at or above the threshold {model.meta.threshold:.4f} for {agent}"
