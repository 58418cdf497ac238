"""Bad payloads get 422 naming the field or 413, admin routes need the token, and nothing bad is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.service.conftest import TrainedRegistry, start_service
from tests.service.server import ADMIN_TOKEN, ServiceProcess, admin_headers, click_json, count_rows, dumps

pytestmark = pytest.mark.slow

MAX_BODY_BYTES = 4096
MAX_BATCH_EVENTS = 5


@pytest.fixture(scope="module")
def service(trained_registry: TrainedRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    workdir = tmp_path_factory.mktemp("service_input")
    overrides = (f"serve.max_body_bytes={MAX_BODY_BYTES}", f"serve.max_batch_events={MAX_BATCH_EVENTS}")
    running = start_service(trained_registry, workdir, overrides=overrides, admin_token=ADMIN_TOKEN)
    yield running
    running.stop()


def post(service: ServiceProcess, route: str, content: str | bytes, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{service.url}{route}", content=content, headers={"content-type": "application/json"}, **kwargs)


def field_locations(response: httpx.Response) -> list[list[Any]]:
    return [entry["loc"] for entry in response.json()["detail"]]


BAD_EVENTS = [
    ("missing_ts", {k: v for k, v in click_json(1).items() if k != "ts"}, ["body", "ts"]),
    ("naive_ts", click_json(1, ts="2026-11-02T10:00:00"), ["body", "ts"]),
    ("host_name_ip", click_json(1, client_ip="crawler.example.com"), ["body", "client_ip"]),
    ("bad_octet_ip", click_json(1, client_ip="198.51.100.300"), ["body", "client_ip"]),
    ("relative_path", click_json(1, path="go/item-1"), ["body", "path"]),
    ("status_as_text", click_json(1, status="200"), ["body", "status"]),
    ("status_out_of_range", click_json(1, status=999), ["body", "status"]),
    ("negative_bytes", click_json(1, bytes=-1), ["body", "bytes"]),
    ("method_with_space", click_json(1, method="GET X"), ["body", "method"]),
    ("unknown_field", click_json(1, cookie="x"), ["body", "cookie"]),
    ("far_future_ts", click_json(1, ts="2999-01-01T00:00:00Z"), ["body", "ts"]),
]


@pytest.mark.parametrize(("case", "event", "location"), BAD_EVENTS, ids=[case for case, _, _ in BAD_EVENTS])
def test_bad_event_names_field(service, case, event, location):
    response = post(service, "/v1/score", dumps(event))
    assert response.status_code == 422, response.text
    assert location in field_locations(response)


def test_error_does_not_echo_client_ip(service):
    response = post(service, "/v1/score", dumps(click_json(1, client_ip="198.51.100.300")))
    assert response.status_code == 422
    assert "198.51.100.300" not in response.text


def test_bad_query_flag_is_422(service):
    response = post(service, "/v1/score?include_features=maybe", dumps(click_json(1)))
    assert response.status_code == 422
    assert ["query", "include_features"] in field_locations(response)


def test_invalid_json_is_422(service):
    response = post(service, "/v1/score", '{"ts": ')
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_json_array_is_422(service):
    response = post(service, "/v1/score", dumps([click_json(1)]))
    assert response.status_code == 422


def test_batch_over_limit_names_events(service):
    events = [click_json(i) for i in range(MAX_BATCH_EVENTS + 1)]
    response = post(service, "/v1/score/batch", dumps({"events": events}))
    assert response.status_code == 422
    assert ["body", "events"] in field_locations(response)


def test_empty_batch_is_422(service):
    response = post(service, "/v1/score/batch", dumps({"events": []}))
    assert response.status_code == 422


def test_bad_event_in_batch_names_index(service):
    events = [click_json(1), click_json(2, status="x")]
    response = post(service, "/v1/score/batch", dumps({"events": events}))
    assert response.status_code == 422
    assert ["body", "events", 1, "status"] in field_locations(response)


def test_oversized_body_is_413(service):
    event = click_json(1, user_agent="x" * (MAX_BODY_BYTES + 1))
    response = post(service, "/v1/score", dumps(event))
    assert response.status_code == 413
    assert "max_body_bytes" in response.json()["detail"]


def test_oversized_chunked_body_is_413(service):
    body = dumps(click_json(1, user_agent="x" * (MAX_BODY_BYTES + 1))).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    response = post(service, "/v1/score", chunks())
    assert response.status_code == 413


def test_bad_requests_store_nothing(service):
    before = service.flush()
    assert before["flushed"]
    stored_before = count_rows(Path(service.workdir) / "clicks.db")

    for _, event, _ in BAD_EVENTS:
        post(service, "/v1/score", dumps(event))
    post(service, "/v1/score/batch", dumps({"events": [click_json(1), click_json(2, status="x")]}))
    service.flush()

    assert count_rows(Path(service.workdir) / "clicks.db") == stored_before


def test_service_still_scores_after_bad_input(service):
    response = post(service, "/v1/score", dumps(click_json(7)))
    assert response.status_code == 200
    body = response.json()
    assert 0.0 <= body["bot_probability"] <= 1.0
    assert body["decision"] in {"allow", "flag", "block"}
    assert body["model_version"] == "1"
    assert service.metric("botclick_http_requests_total", 'route="/v1/score",status="422"') > 0


ADMIN_ROUTES = ["/admin/reload", "/admin/flush"]


@pytest.mark.parametrize("route", ADMIN_ROUTES)
def test_admin_without_bearer_is_401(service, route):
    response = httpx.post(f"{service.url}{route}")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("route", ADMIN_ROUTES)
def test_admin_wrong_token_is_401(service, route):
    response = httpx.post(f"{service.url}{route}", headers={"Authorization": "Bearer wrong-token"})
    assert response.status_code == 401


@pytest.mark.parametrize("route", ADMIN_ROUTES)
def test_admin_with_token_is_200(service, route):
    response = httpx.post(f"{service.url}{route}", headers=admin_headers(), timeout=30)
    assert response.status_code == 200, response.text


def test_admin_without_token_env_is_503(trained_registry, tmp_path):
    service = start_service(trained_registry, tmp_path)
    try:
        response = httpx.post(f"{service.url}/admin/reload", headers=admin_headers())
    finally:
        service.stop()
    assert response.status_code == 503
    assert "BOTCLICK_ADMIN_TOKEN" in response.json()["detail"]
