"""The scoring service with its click store in PostgreSQL, configured through BOTCLICK_CLICK_STORE_URL as the README describes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from src.config import load_params, write_params
from tests.service.conftest import TrainedRegistry
from tests.service.server import ADMIN_TOKEN, ServiceProcess, child_env, click_json, dumps

pytestmark = pytest.mark.slow

CLICKS = 30
STORE_URL_ENV = "BOTCLICK_CLICK_STORE_URL"


@pytest.fixture
def table() -> str:
    return f"clicks_service_{os.getpid()}"


@pytest.fixture
def params(trained_registry: TrainedRegistry, table: str, tmp_path) -> Path:
    """The registry's params with a table of this test run, so a shared database keeps its own tables."""
    cfg = load_params(trained_registry.params)
    cfg.serve.store.table = table
    cfg.serve.store.spill_path = str(tmp_path / "spill.jsonl")
    return write_params(cfg, tmp_path / "params.yaml")


@pytest.fixture
def stopped_service(
    trained_registry: TrainedRegistry, postgres_url: str, params: Path, table: str, tmp_path
) -> Iterator[ServiceProcess]:
    """Run the service on PostgreSQL, send CLICKS clicks, then stop it with SIGTERM; drop the table afterwards."""
    env = child_env(trained_registry.tracking_uri, {STORE_URL_ENV: postgres_url, "BOTCLICK_ADMIN_TOKEN": ADMIN_TOKEN})
    service = ServiceProcess(workdir=tmp_path, params=params, env=env).start()
    try:
        for index in range(CLICKS):
            response = httpx.post(f"{service.url}/v1/score", content=dumps(click_json(index)))
            assert response.status_code == 200, response.text
        service.assert_clean_exit(service.stop())
        yield service
    finally:
        service.stop()
        engine = create_engine(postgres_url)
        with engine.begin() as connection:
            connection.execute(text(f'DROP TABLE IF EXISTS "{table}"'))
        engine.dispose()


def stored(postgres_url: str, table: str) -> list[dict]:
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(text(f'SELECT * FROM "{table}" ORDER BY id'))]
    engine.dispose()
    return rows


def test_postgres_store_keeps_every_click(stopped_service, postgres_url, table):
    rows = stored(postgres_url, table)
    assert [row["path"] for row in rows] == [f"/go/item-{i}" for i in range(CLICKS)]
    assert {row["decision"] for row in rows} <= {"allow", "flag", "block"}


def test_postgres_store_has_no_raw_ip(stopped_service, postgres_url, table):
    rows = stored(postgres_url, table)
    assert "client_ip" not in rows[0]
    text_of_rows = json.dumps(rows, default=str)
    assert "198.51.100." not in text_of_rows


def test_export_reads_postgres_store(stopped_service, trained_registry, postgres_url, params, tmp_path):
    out = tmp_path / "clicks.jsonl"
    env = child_env(trained_registry.tracking_uri, {STORE_URL_ENV: postgres_url})
    command = [
        sys.executable, "-m", "src.serve", "export-clicks", "--params", str(params), "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=120)

    assert done.returncode == 0, done.stderr[-2000:]
    assert len(out.read_text(encoding="utf-8").splitlines()) == CLICKS
