"""Registry outages keep the loaded model, and without any model the service scores with the rules."""

from __future__ import annotations

import time
from typing import Callable

import httpx
import pytest
from mlflow import MlflowClient

from tests.service.conftest import CHAMPION, MODEL_NAME, TrainedRegistry, add_version, set_champion, start_service
from tests.service.server import TrackingServer, click_json, dumps, free_port

pytestmark = pytest.mark.slow

POLL_INTERVAL_S = 0.3
WAIT_S = 30.0
CRAWLER_AGENT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BROWSER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def wait_until(condition: Callable[[], bool], description: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {WAIT_S} s waiting for {description}")


def score(url: str, index: int, **fields) -> dict:
    response = httpx.post(f"{url}/v1/score", content=dumps(click_json(index, **fields)))
    assert response.status_code == 200, response.text
    return response.json()


def model_info(url: str) -> dict:
    return httpx.get(f"{url}/v1/model").json()


def test_tracking_server_outage_keeps_model(trained_registry: TrainedRegistry, tmp_path):
    backend = trained_registry.copy_store(tmp_path / "registry")
    tracking = TrackingServer(tmp_path, backend).start()
    overrides = (f"serve.poll_interval_s={POLL_INTERVAL_S}",)
    service = start_service(trained_registry, tmp_path / "service", tracking.url, overrides)
    try:
        assert score(service.url, 1)["model_version"] == "1"

        tracking.stop()
        wait_until(lambda: model_info(service.url)["last_poll_error"] is not None, "a failed registry poll")
        errors_before = service.metric("botclick_registry_errors_total", 'kind="poll"')
        time.sleep(3 * POLL_INTERVAL_S)

        during = [score(service.url, i) for i in range(2, 22)]
        assert {r["model_version"] for r in during} == {"1"}
        assert not any(r["fallback"] for r in during)
        assert httpx.get(f"{service.url}/readyz").status_code == 200
        assert service.metric("botclick_registry_errors_total", 'kind="poll"') > errors_before >= 1
        assert "model registry poll failed" in service.log()

        new_version = add_version(backend)
        set_champion(backend, new_version)
        tracking = TrackingServer(tmp_path, backend, port=tracking.port).start()
        wait_until(lambda: model_info(service.url)["model_version"] == new_version, "the swap after recovery")
        assert score(service.url, 30)["model_version"] == new_version
        assert model_info(service.url)["last_poll_error"] is None
    finally:
        service.stop()
        tracking.stop()


def test_unreachable_registry_at_start_uses_rules(trained_registry: TrainedRegistry, tmp_path):
    closed_port_uri = f"http://127.0.0.1:{free_port()}"
    service = start_service(trained_registry, tmp_path, closed_port_uri)
    try:
        answer = score(service.url, 1)
        readiness = httpx.get(f"{service.url}/readyz")
        info = model_info(service.url)
    finally:
        service.stop()

    assert answer["model_version"] == "rules"
    assert answer["fallback"] is True
    assert readiness.status_code == 503
    assert readiness.json()["model_loaded"] is False
    assert info["fallback"] is True
    assert info["last_poll_error"]
    assert "model registry poll failed" in service.log()


def test_no_champion_uses_rules_then_loads_model(trained_registry: TrainedRegistry, tmp_path):
    tracking_uri = trained_registry.copy_store(tmp_path / "registry")
    MlflowClient(tracking_uri=tracking_uri).delete_registered_model_alias(MODEL_NAME, CHAMPION)
    service = start_service(trained_registry, tmp_path / "service", tracking_uri, (f"serve.poll_interval_s={POLL_INTERVAL_S}",))
    try:
        crawler = score(service.url, 1, user_agent=CRAWLER_AGENT)
        browser = score(service.url, 2, user_agent=BROWSER_AGENT)
        fallback_count = service.metric("botclick_fallback_clicks_total")
        info_before = model_info(service.url)
        not_ready = httpx.get(f"{service.url}/readyz").status_code

        set_champion(tracking_uri, "1")
        wait_until(lambda: model_info(service.url)["model_version"] == "1", "the first model to load")
        after = score(service.url, 3, user_agent=BROWSER_AGENT)
        ready = httpx.get(f"{service.url}/readyz").status_code
    finally:
        service.stop()

    assert crawler["model_version"] == "rules"
    assert crawler["decision"] == "flag"
    assert crawler["bot_probability"] == 1.0
    assert [reason["feature"] for reason in crawler["reasons"]] == ["declared_crawler"]
    assert browser["decision"] == "allow"
    assert browser["reasons"] == []
    assert fallback_count == 2
    assert info_before["fallback"] is True
    assert info_before["rules"]["decision_when_matched"] == "flag"
    assert not_ready == 503
    assert after["model_version"] == "1"
    assert after["fallback"] is False
    assert ready == 200
