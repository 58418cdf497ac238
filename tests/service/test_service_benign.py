"""The running service flags declared benign automation that behaves as such, and blocks the rest.

Thresholds of 0 make every scored click a block, so any flag comes from the benign rule.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.service.conftest import TrainedRegistry, start_service
from tests.service.server import ServiceProcess, click_json, dumps

pytestmark = pytest.mark.slow

BLOCK_EVERYTHING = ("serve.flag_threshold=0.0", "serve.block_threshold=0.0")
FEED_READER = "Tiny Tiny RSS/21.04 (https://tt-rss.org/)"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


@pytest.fixture(scope="module")
def service(trained_registry: TrainedRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    running = start_service(trained_registry, tmp_path_factory.mktemp("benign_service"), overrides=BLOCK_EVERYTHING)
    yield running
    running.stop()


def score(service: ServiceProcess, minute: int, client_ip: str, user_agent: str, path: str) -> dict:
    event = click_json(0, ts=f"2026-11-02T10:{minute:02d}:00Z", client_ip=client_ip, user_agent=user_agent, path=path)
    response = httpx.post(f"{service.url}/v1/score", content=dumps(event))
    assert response.status_code == 200, response.text
    return response.json()


def test_feed_reader_on_feed_is_flagged(service):
    result = score(service, 0, "203.0.113.10", FEED_READER, "/feed/")
    assert result["decision"] == "flag"
    assert result["reasons"][0]["feature"] == "benign_automation"


def test_browser_on_feed_is_blocked(service):
    assert score(service, 0, "203.0.113.11", BROWSER, "/feed/")["decision"] == "block"


def test_feed_reader_clicking_affiliate_is_blocked(service):
    client = "203.0.113.12"
    assert score(service, 0, client, FEED_READER, "/feed/")["decision"] == "flag"
    assert score(service, 1, client, FEED_READER, "/go/shop")["decision"] == "block"
    # The affiliate click stays in the session, so its later feed fetches are blocked too.
    assert score(service, 2, client, FEED_READER, "/feed/")["decision"] == "block"
