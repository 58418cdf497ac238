"""Click store table, SQLite WAL, export to JSON lines and the parser that reads the export back."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet  # noqa: F401 - makes pa.parquet available
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from src.cli import app
from src.config import compose_config, write_params
from src.data.log_parser import LineError
from src.data.schema import RAW_EVENT_SCHEMA
from src.serve.click_store import (
    CLICK_STORE_FORMAT,
    ID_COLUMN,
    RECORD_COLUMNS,
    ClickStore,
    export_click_store,
    parse_exported_line,
    read_raw_events,
)
from src.serve.metrics import ServiceMetrics
from src.serve.settings import StoreSettings
from src.serve.store_writer import ClickStoreWriter, SpillFile

TABLE = "clicks"
PRAGMAS = {"journal_mode": "WAL", "synchronous": "NORMAL", "busy_timeout": "5000"}
START = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def record(index: int, ts: datetime = START) -> dict[str, Any]:
    return {
        "ts": ts + timedelta(seconds=index),
        "client_id": f"{index:016x}",
        "prefix_id": "00000000000000ff",
        "method": "GET",
        "path": f"/go/item-{index}",
        "protocol": "HTTP/1.1",
        "status": None if index % 2 else 302,
        "bytes": None if index % 3 else 512,
        "referrer": "",
        "user_agent": "Mozilla/5.0",
        "session_id": f"{index:016x}-1793700000",
        "bot_probability": index / 100,
        "decision": "allow",
        "model_version": "1",
        "received_at": START + timedelta(days=1),
    }


@pytest.fixture()
def store(tmp_path: Path) -> ClickStore:
    created = ClickStore(f"sqlite:///{tmp_path / 'data' / 'clicks.db'}", TABLE, PRAGMAS)
    created.create_table()
    yield created
    created.dispose()


def test_columns_follow_raw_event_schema(store):
    assert list(store.table.columns.keys()) == [ID_COLUMN, *RECORD_COLUMNS]
    for field in RAW_EVENT_SCHEMA:
        if field.name in store.table.c:
            assert store.table.c[field.name].nullable == field.nullable, field.name


def test_sqlite_file_uses_wal(store):
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"


def test_check_writable_leaves_no_row(store):
    store.check_writable()
    assert store.count() == 0


def test_times_come_back_in_utc(store):
    local = datetime(2026, 11, 2, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    store.insert([record(0, ts=local)])
    [row] = list(store.iter_rows())
    assert row["ts"] == datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    assert row["ts"].tzinfo == UTC


def test_raw_events_fit_raw_schema(store):
    store.insert([record(i) for i in range(5)])
    events = list(read_raw_events(store.url, TABLE))
    table = pa.Table.from_pylist(events, schema=RAW_EVENT_SCHEMA)
    assert table.num_rows == 5
    assert events[0]["source"] == f"{CLICK_STORE_FORMAT}/{TABLE}"
    assert [e["line_no"] for e in events] == [1, 2, 3, 4, 5]
    assert {e["source_format"] for e in events} == {CLICK_STORE_FORMAT}


def test_read_pages_through_many_rows(store, monkeypatch):
    monkeypatch.setattr("src.serve.click_store.READ_BATCH_ROWS", 3)
    store.insert([record(i) for i in range(10)])
    assert [row["path"] for row in store.iter_rows()] == [f"/go/item-{i}" for i in range(10)]


def test_export_round_trips_through_parser(store, tmp_path):
    stored = [record(i) for i in range(6)]
    store.insert(stored)
    out = tmp_path / "logs" / "clicks.jsonl"

    assert export_click_store(store.url, TABLE, out) == 6
    lines = out.read_text(encoding="utf-8").splitlines()
    parsed = [parse_exported_line(line) for line in lines]
    for fields, expected in zip(parsed, stored, strict=True):
        for name in ("ts", "client_id", "prefix_id", "method", "path", "protocol", "status", "bytes", "referrer", "user_agent"):
            assert fields[name] == expected[name], name
        assert fields["source_format"] == CLICK_STORE_FORMAT
    assert json.loads(lines[0])["store_id"] == 1
    assert not out.with_name(out.name + ".partial").exists()


def test_collect_reads_export(store, tmp_path):
    from src.data.collect import collect

    stored = [record(i) for i in range(4)]
    stored[1]["protocol"] = ""
    stored[2]["referrer"] = ""
    store.insert(stored)
    logs = tmp_path / "logs"
    export_click_store(store.url, TABLE, logs / "clicks.jsonl")

    out = tmp_path / "collected"
    cfg = compose_config(["data.mix_simulated=false"])
    report = collect(logs, out / "raw.parquet", out / "quarantine.jsonl", out / "collect.json", cfg)
    events = pa.parquet.read_table(out / "raw.parquet").to_pylist()

    assert report["totals"]["parsed"] == 4
    assert report["totals"]["quarantined"] == 0
    for event, expected in zip(events, stored, strict=True):
        for name in ("ts", "client_id", "prefix_id", "method", "path", "protocol", "status", "bytes", "referrer", "user_agent"):
            assert event[name] == expected[name], name


def test_export_since_keeps_later_clicks(store, tmp_path):
    store.insert([record(i) for i in range(10)])
    out = tmp_path / "clicks.jsonl"
    assert export_click_store(store.url, TABLE, out, since=START + timedelta(seconds=7)) == 3


BAD_LINES = [
    ("", "empty_line"),
    ("{", "invalid_json"),
    ("[]", "not_a_json_object"),
    ("client_ip", "unknown_field"),
    ("raw_ip_as_client_id", "invalid_client_id"),
    ("no_prefix_id", "missing_prefix_id"),
    ("naive_ts", "invalid_ts"),
]


def bad_line(case: str) -> str:
    if case in ("", "{", "[]"):
        return case
    entry = json.loads(_exported(0))
    if case == "client_ip":
        entry["client_ip"] = "198.51.100.7"
    elif case == "raw_ip_as_client_id":
        entry["client_id"] = "198.51.100.7"
    elif case == "no_prefix_id":
        del entry["prefix_id"]
    elif case == "naive_ts":
        entry["ts"] = "2026-11-02T10:00:00"
    return json.dumps(entry)


def _exported(index: int) -> str:
    from src.serve.click_store import exported_line

    return exported_line({**record(index), ID_COLUMN: index + 1})


@pytest.mark.parametrize(("case", "reason"), BAD_LINES, ids=[reason for _, reason in BAD_LINES])
def test_parser_rejects_bad_line(case, reason):
    with pytest.raises(LineError) as caught:
        parse_exported_line(bad_line(case))
    assert caught.value.reason == reason


def test_export_clicks_command(store, tmp_path):
    store.insert([record(i) for i in range(4)])
    params = write_params(compose_config([f"serve.store.url={store.url}"]), tmp_path / "params.yaml")
    out = tmp_path / "export" / "clicks.jsonl"

    result = CliRunner().invoke(app, ["export-clicks", "--params", str(params), "--out", str(out), "--since", "2026-11-02T10:00:02+00:00"])

    assert result.exit_code == 0, result.output
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2


def test_spill_file_rejects_damaged_line(tmp_path):
    spill = SpillFile(tmp_path / "spill.jsonl")
    spill.append([record(1), record(2)])
    with spill.path.open("a", encoding="utf-8") as handle:
        handle.write('{"ts": "2026-11-02T10:00:00+00:00", "client_id"')
    importing_path = spill.take()

    records = spill.read(importing_path)

    assert [r["path"] for r in records] == ["/go/item-1", "/go/item-2"]
    assert records[0]["ts"] == record(1)["ts"]
    rejected = [json.loads(line) for line in spill.rejected.read_text(encoding="utf-8").splitlines()]
    assert [entry["line_no"] for entry in rejected] == [3]


def store_settings(tmp_path: Path, url: str, **changes: Any) -> StoreSettings:
    values = {
        "url": url, "table": TABLE, "batch_size": 3, "flush_interval_s": 0.05, "queue_max": 100,
        "spill_path": tmp_path / "spill.jsonl", "retry_interval_s": 0.05, "shutdown_timeout_s": 1.0,
        "sqlite_pragmas": PRAGMAS,
    }  # fmt: skip
    values.update(changes)
    return StoreSettings(**values)


def test_writer_flush_and_close_insert_everything(tmp_path):
    settings = store_settings(tmp_path, f"sqlite:///{tmp_path / 'clicks.db'}")
    writer = ClickStoreWriter(ClickStore(settings.url, TABLE, PRAGMAS), settings, ServiceMetrics([0.1]))
    writer.start()
    writer.submit([record(i) for i in range(7)])
    assert writer.flush(timeout_s=10)
    assert writer.store.count() == 7

    writer.submit([record(i) for i in range(7, 9)])
    writer.close()
    reopened = ClickStore(settings.url, TABLE, PRAGMAS)
    assert reopened.count() == 9
    reopened.dispose()


def test_postgresql_round_trip(tmp_path, postgres_url):
    url = postgres_url
    table = f"clicks_test_{os.getpid()}"
    store = ClickStore(url, table, {})
    try:
        store.create_table()
        store.insert([record(i) for i in range(3)])
        rows = list(store.iter_rows())
        assert [row["path"] for row in rows] == ["/go/item-0", "/go/item-1", "/go/item-2"]
        assert rows[0]["ts"] == START
        assert export_click_store(url, table, tmp_path / "clicks.jsonl") == 3
    finally:
        store.table.drop(store.engine, checkfirst=True)
        store.dispose()
