"""Tests of the benign automation rule: declared feed readers and monitors are flagged, never blocked."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from src.config import compose_config
from src.serve.benign import AFFILIATE_SHARE, POST_SHARE, BenignAutomation
from src.serve.settings import ServeConfigError

FEED_READER = "Tiny Tiny RSS/21.04 (https://tt-rss.org/)"
MONITOR = "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


@pytest.fixture(scope="module")
def cfg():
    return compose_config()


@pytest.fixture(scope="module")
def rule(cfg) -> BenignAutomation:
    return BenignAutomation.from_config(cfg.serve.benign_automation, list(cfg.features.names))


def vector(cfg, **values: float) -> list[float]:
    """Return a feature vector of zeros with the given features set."""
    names = list(cfg.features.names)
    row = [0.0] * len(names)
    for name, value in values.items():
        row[names.index(name)] = value
    return row


def click(user_agent: str, path: str = "/feed/", method: str = "GET") -> dict[str, str]:
    return {"user_agent": user_agent, "path": path, "method": method}


def test_feed_reader_fetching_feed_is_capped(rule, cfg):
    assert rule.applies(click(FEED_READER), "feed", vector(cfg))


def test_monitor_on_front_page_is_capped(rule, cfg):
    assert rule.applies(click(MONITOR, path="/"), "page", vector(cfg))


def test_head_request_is_capped(rule, cfg):
    assert rule.applies(click(MONITOR, path="/pricing", method="HEAD"), "page", vector(cfg))


def test_browser_user_agent_is_not_capped(rule, cfg):
    assert not rule.applies(click(BROWSER), "feed", vector(cfg))


def test_affiliate_click_voids_cap(rule, cfg):
    assert not rule.applies(click(FEED_READER), "feed", vector(cfg, **{AFFILIATE_SHARE: 0.2}))


def test_post_voids_cap(rule, cfg):
    assert not rule.applies(click(FEED_READER), "feed", vector(cfg, **{POST_SHARE: 0.5}))


def test_feed_reader_fetching_pages_is_not_capped(rule, cfg):
    assert not rule.applies(click(FEED_READER, path="/blog/post-1"), "page", vector(cfg))


def test_empty_user_agent_is_not_capped(rule, cfg):
    assert not rule.applies({"user_agent": None, "path": "/feed/", "method": "GET"}, "feed", vector(cfg))


def test_invalid_pattern_names_key(cfg):
    node = OmegaConf.merge(cfg.serve.benign_automation, {"user_agent_patterns": ["(unclosed"]})
    with pytest.raises(ServeConfigError, match=r"'\(unclosed'.*serve\.benign_automation\.user_agent_patterns"):
        BenignAutomation.from_config(node, list(cfg.features.names))


def test_unknown_request_kind_names_value(cfg):
    node = OmegaConf.merge(cfg.serve.benign_automation, {"request_kinds": ["feed", "rss"]})
    with pytest.raises(ServeConfigError, match=r"\['rss'\].*serve\.benign_automation\.request_kinds"):
        BenignAutomation.from_config(node, list(cfg.features.names))


def test_missing_feature_names_feature(cfg):
    names = [n for n in cfg.features.names if n != POST_SHARE]
    with pytest.raises(ServeConfigError, match=POST_SHARE):
        BenignAutomation.from_config(cfg.serve.benign_automation, names)
