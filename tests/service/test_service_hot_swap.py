"""Moving the champion alias under load swaps the model without a failed or dropped request."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import TrainedRegistry, add_version, set_champion, start_service
from tests.service.server import ADMIN_TOKEN, ServiceProcess, click_json, count_rows, dumps, stored_rows

pytestmark = pytest.mark.slow

POLL_INTERVAL_S = 0.3
WORKERS = 8
SWAP_AFTER_S = 1.5
# Load goes on until this long after the first response from the new version, or MAX_LOAD_S.
AFTER_SWAP_S = 2.0
MAX_LOAD_S = 60.0


@dataclass
class Outcome:
    """One request of the load: when it started and ended, and what came back."""

    index: int
    started: float
    ended: float
    status: int
    version: str | None
    n_requests: float | None


async def run_load(url: str, swap: Callable[[], None], new_version: str) -> list[Outcome]:
    """Send clicks from WORKERS concurrent clients, call `swap` (in a thread) after SWAP_AFTER_S.

    The load stops AFTER_SWAP_S after the first response from `new_version`, or after MAX_LOAD_S.
    """
    outcomes: list[Outcome] = []
    counter = iter(range(10**9))
    started_at = time.monotonic()
    stop_at = {"time": started_at + MAX_LOAD_S}

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < stop_at["time"]:
            index = next(counter)
            started = time.monotonic()
            try:
                response = await client.post("/v1/score", params={"include_features": "true"}, content=dumps(click_json(index)))
            except httpx.HTTPError:
                outcomes.append(Outcome(index, started, time.monotonic(), 0, None, None))
                continue
            body = response.json() if response.status_code == 200 else {}
            version = body.get("model_version")
            n_requests = body.get("features", {}).get("n_requests")
            outcomes.append(Outcome(index, started, time.monotonic(), response.status_code, version, n_requests))
            if version == new_version:
                stop_at["time"] = min(stop_at["time"], time.monotonic() + AFTER_SWAP_S)

    async def swap_later() -> None:
        await asyncio.sleep(SWAP_AFTER_S)
        await asyncio.to_thread(swap)

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await asyncio.gather(swap_later(), *(worker(client) for _ in range(WORKERS)))
    return outcomes


@pytest.fixture(scope="module")
def swapped(trained_registry: TrainedRegistry, tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("hot_swap")
    tracking_uri = trained_registry.copy_store(workdir / "registry")
    new_version = add_version(tracking_uri)
    service = start_service(
        trained_registry, workdir, tracking_uri, (f"serve.poll_interval_s={POLL_INTERVAL_S}",), admin_token=ADMIN_TOKEN
    )
    try:
        outcomes = asyncio.run(run_load(service.url, lambda: set_champion(tracking_uri, new_version), new_version))
        service.flush()
        model = httpx.get(f"{service.url}/v1/model").json()
        swaps = service.metric("botclick_model_swaps_total")
        info = service.metric("botclick_model_info", f'version="{new_version}"')
    finally:
        service.stop()
    return {"service": service, "outcomes": outcomes, "version": new_version, "model": model, "swaps": swaps, "info": info}


def test_no_request_failed(swapped):
    statuses = [o.status for o in swapped["outcomes"]]
    assert len(statuses) > 100
    assert statuses.count(200) == len(statuses)


def test_both_versions_served(swapped):
    versions = {o.version for o in swapped["outcomes"]}
    assert versions == {"1", swapped["version"]}


def test_no_old_version_after_swap(swapped):
    new = swapped["version"]
    first_new_end = min(o.ended for o in swapped["outcomes"] if o.version == new)
    late = [o for o in swapped["outcomes"] if o.started > first_new_end]
    assert late
    assert {o.version for o in late} == {new}


def test_model_endpoint_and_metrics_show_swap(swapped):
    assert swapped["model"]["model_version"] == swapped["version"]
    assert swapped["model"]["fallback"] is False
    assert swapped["swaps"] == 1
    assert swapped["info"] == 1


def test_sessions_continue_across_swap(swapped):
    # click_json gives 250 clients; each client's request count keeps rising across the swap.
    by_client: dict[int, list[Outcome]] = {}
    for outcome in sorted(swapped["outcomes"], key=lambda o: o.index):
        by_client.setdefault(outcome.index % 250, []).append(outcome)
    crossing = [seq for seq in by_client.values() if {o.version for o in seq} == {"1", swapped["version"]}]
    assert crossing
    for seq in crossing:
        counts = [o.n_requests for o in seq]
        assert counts == list(range(1, len(counts) + 1))


def test_store_has_every_answered_click(swapped):
    db = Path(swapped["service"].workdir) / "clicks.db"
    answered = {f"/go/item-{o.index}" for o in swapped["outcomes"] if o.status == 200}
    stored = stored_rows(db, "path, model_version")
    assert count_rows(db) == len(answered)
    assert {path for path, _ in stored} == answered
    assert {version for _, version in stored} == {"1", swapped["version"]}
