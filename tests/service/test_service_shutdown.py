"""SIGTERM under load stores every click that got a 200: from the queue, the spill file, or a later start."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import TrainedRegistry, start_service
from tests.service.server import ServiceProcess, click_json, count_rows, dumps, stored_rows

pytestmark = pytest.mark.slow

WORKERS = 8
# Writer settings that keep every click queued until shutdown.
HOLD_IN_QUEUE = ("serve.store.batch_size=100000", "serve.store.flush_interval_s=600")
SIGTERM_AFTER_S = 2.0


async def load_until_stopped(service: ServiceProcess) -> tuple[set[int], int]:
    """Send clicks from WORKERS clients and SIGTERM the service mid-load; return the indexes that got 200, and the attempts."""
    answered: set[int] = set()
    attempts = 0
    counter = iter(range(10**9))
    stop_at = time.monotonic() + SIGTERM_AFTER_S

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal attempts
        while service.process is not None and service.process.poll() is None:
            index = next(counter)
            attempts += 1
            try:
                response = await client.post("/v1/score", content=dumps(click_json(index)))
            except httpx.HTTPError:
                await asyncio.sleep(0.01)
                continue
            if response.status_code == 200:
                answered.add(index)

    async def terminate() -> None:
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        service.process.send_signal(signal.SIGTERM)

    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        await asyncio.gather(terminate(), *(worker(client) for _ in range(WORKERS)))
    return answered, attempts


def stored_indexes(db: Path) -> list[int]:
    return [int(path.rsplit("-", 1)[1]) for (path,) in stored_rows(db, "path")]


def test_sigterm_stores_every_answered_click(trained_registry: TrainedRegistry, tmp_path):
    service = start_service(trained_registry, tmp_path, overrides=HOLD_IN_QUEUE)
    answered, attempts = asyncio.run(load_until_stopped(service))
    exit_code = service.stop()

    stored = stored_indexes(tmp_path / "clicks.db")
    service.assert_clean_exit(exit_code)
    assert len(answered) > 20
    assert answered <= set(stored)
    assert len(stored) == len(set(stored))
    assert len(stored) <= attempts
    assert f"writing {len(stored)} queued clicks" in service.log()


def test_full_queue_spills_and_shutdown_inserts_spill(trained_registry: TrainedRegistry, tmp_path):
    service = start_service(trained_registry, tmp_path, overrides=(*HOLD_IN_QUEUE, "serve.store.queue_max=5"))
    for index in range(40):
        assert httpx.post(f"{service.url}/v1/score", content=dumps(click_json(index))).status_code == 200
    spilled = service.metric("botclick_store_spilled_total")
    exit_code = service.stop()

    assert spilled == 35
    service.assert_clean_exit(exit_code)
    assert sorted(stored_indexes(tmp_path / "clicks.db")) == list(range(40))
    assert not (tmp_path / "spill.jsonl").exists()
    assert not (tmp_path / "spill.jsonl.importing").exists()


def test_store_down_spills_and_next_start_inserts(trained_registry: TrainedRegistry, tmp_path):
    # A directory where the SQLite file should be: every insert fails.
    broken = tmp_path / "broken.db"
    broken.mkdir()
    down = (f"serve.store.url=sqlite:///{broken}", "serve.store.shutdown_timeout_s=1", "serve.store.retry_interval_s=0.2")
    first = start_service(trained_registry, tmp_path / "first", overrides=down)
    for index in range(20):
        assert httpx.post(f"{first.url}/v1/score", content=dumps(click_json(index))).status_code == 200
    readiness = httpx.get(f"{first.url}/readyz").json()
    first.assert_clean_exit(first.stop())

    assert readiness["ready"] is False
    assert readiness["store_writable"] is False
    # The last failed import leaves the spill renamed with the .importing suffix.
    spilled = sorted((tmp_path / "first").glob("spill.jsonl*"))
    assert spilled

    second_dir = tmp_path / "second"
    second_dir.mkdir()
    for path in spilled:
        path.rename(second_dir / path.name)
    second = start_service(trained_registry, second_dir)
    second.assert_clean_exit(second.stop())
    assert sorted(stored_indexes(second_dir / "clicks.db")) == list(range(20))
    assert not list(second_dir.glob("spill.jsonl*"))
