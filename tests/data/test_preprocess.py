"""Tests for the preprocess stage on raw-events parquet files written in tmp_path."""

from __future__ import annotations

import json
import logging
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from src.config import compose_config, write_params
from src.data.preprocess import app, preprocess
from src.data.schema import EVENT_COLUMNS, RAW_EVENT_SCHEMA

T0 = datetime(2026, 11, 2, 10, 0, 0, tzinfo=timezone.utc)
CHROME_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def raw_event(second: float, line_no: int, source: str = "access.log", **fields: object) -> dict[str, object]:
    """Return one raw event row; `fields` override the defaults."""
    row: dict[str, object] = {
        "ts": T0 + timedelta(seconds=second),
        "client_id": "c0ffee0000000001",
        "prefix_id": "beef000000000001",
        "method": "GET",
        "path": "/",
        "protocol": "HTTP/1.1",
        "status": 200,
        "bytes": 512,
        "referrer": "",
        "user_agent": CHROME_UA,
        "source": source,
        "line_no": line_no,
        "source_format": "combined",
    }
    row.update(fields)
    return row


def write_raw(rows: list[dict[str, object]], path: Path) -> Path:
    """Write rows as a raw-events parquet file with RAW_EVENT_SCHEMA."""
    pq.write_table(pa.Table.from_pylist(rows, schema=RAW_EVENT_SCHEMA), path)
    return path


def run_preprocess(tmp_path: Path, rows: list[dict[str, object]], *overrides: str) -> tuple[pd.DataFrame, dict]:
    """Run preprocess on `rows` and return the events file and the report."""
    raw = write_raw(rows, tmp_path / "raw.parquet")
    events_path, report_path = tmp_path / "out" / "events.parquet", tmp_path / "out" / "preprocess.json"
    returned = preprocess(raw, events_path, report_path, compose_config(list(overrides)))
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report == returned
    return pd.read_parquet(events_path), report


def test_missing_input_names_collect_stage(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "clicks.parquet"
    with pytest.raises(FileNotFoundError) as info:
        preprocess(missing, tmp_path / "e.parquet", tmp_path / "r.json", compose_config(["data.mix_simulated=false"]))
    assert str(missing) in str(info.value)
    assert "collect" in str(info.value)


def test_shuffled_input_sorted_by_time_then_file_order(tmp_path: Path) -> None:
    # Like the 2015 log: lines within one minute are shuffled, and two share a second.
    rows = [raw_event(s, line_no=i + 1, path=f"/p{i}") for i, s in enumerate([0, 5, 5, 17, 42, 59])]
    rows.append(raw_event(5, line_no=1, source="access.log.1", path="/rotated"))
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)

    events, _ = run_preprocess(tmp_path, shuffled)

    assert events["ts"].is_monotonic_increasing
    assert events["path"].tolist() == ["/p0", "/p1", "/p2", "/rotated", "/p3", "/p4", "/p5"]
    assert events.loc[events["ts"] == T0 + timedelta(seconds=5), "line_no"].tolist() == [2, 3, 1]


def test_overlapping_files_counted_once(tmp_path: Path) -> None:
    # The rotated file ends with the lines that the current file starts with.
    older = [raw_event(0, 1, "access.log.1", path="/a"), raw_event(10, 2, "access.log.1", path="/b"),
             raw_event(20, 3, "access.log.1", path="/c"), raw_event(20, 4, "access.log.1", path="/c")]
    newer = [raw_event(10, 1, "access.log", path="/b", source_format="combined_vhost"),
             raw_event(20, 2, "access.log", path="/c"), raw_event(20, 3, "access.log", path="/c"),
             raw_event(30, 4, "access.log", path="/d"), raw_event(30, 5, "access.log", path="/c")]

    events, report = run_preprocess(tmp_path, newer + older)

    assert events["path"].tolist() == ["/a", "/b", "/c", "/c", "/d", "/c"]
    assert report["rows_in"] == 9
    assert report["duplicates_dropped"] == 3
    assert report["copies_across_sources"] == 3
    assert report["repeats_within_source"] == 2
    assert report["rows_out"] == 6
    kept_b = events[events["path"] == "/b"]
    assert kept_b["source"].tolist() == ["access.log"]
    assert kept_b["line_no"].tolist() == [1]


def test_more_copies_in_later_file_kept(tmp_path: Path) -> None:
    # Three identical requests in one second; the older file was cut after two of them.
    rows = [raw_event(5, i, "a.log", path="/login", method="POST") for i in (1, 2)]
    rows += [raw_event(5, i, "b.log", path="/login", method="POST") for i in (7, 8, 9)]

    events, report = run_preprocess(tmp_path, rows)

    assert len(events) == 3
    assert events["source"].tolist() == ["a.log", "a.log", "b.log"]
    assert events["line_no"].tolist() == [1, 2, 9]
    assert report["duplicates_dropped"] == 2


def test_same_second_repeats_in_one_file_kept(tmp_path: Path) -> None:
    rows = [raw_event(0, i, path="/administrator/index.php", method="POST") for i in range(1, 6)]
    rows.append(raw_event(0, 6, path="/administrator/index.php", method="POST", status=303))

    events, report = run_preprocess(tmp_path, rows)

    assert len(events) == 6
    assert report["duplicates_dropped"] == 0
    assert report["repeats_within_source"] == 4
    assert report["drop_repeats_within_source"] is False


def test_same_second_repeats_dropped_when_configured(tmp_path: Path) -> None:
    rows = [raw_event(0, i, path="/administrator/index.php", method="POST") for i in range(1, 6)]
    rows.append(raw_event(0, 6, path="/administrator/index.php", method="POST", status=303))
    rows.append(raw_event(0, 2, "access.log.1", path="/administrator/index.php", method="POST"))

    events, report = run_preprocess(tmp_path, rows, "data.preprocess.drop_repeats_within_source=true")

    assert len(events) == 2
    assert events["line_no"].tolist() == [1, 6]
    assert report["duplicates_dropped"] == 5
    assert report["drop_repeats_within_source"] is True


def test_duplicate_with_null_status_dropped(tmp_path: Path) -> None:
    rows = [raw_event(0, 1, status=None, bytes=None), raw_event(0, 1, source="other.log", status=None, bytes=None)]

    events, report = run_preprocess(tmp_path, rows)

    assert report["duplicates_dropped"] == 1
    assert events["status"].isna().tolist() == [True]


def test_request_kinds_from_config_patterns(tmp_path: Path) -> None:
    expected = {
        "/robots.txt": "robots",
        "/go/amazon-widget?ref=x": "affiliate",
        "/blog/feed/": "feed",
        "/static/site.css?v=3": "asset",
        "/blog/post-1": "page",
        "": "other",
    }
    rows = [raw_event(i, i + 1, path=p) for i, p in enumerate(expected)]
    rows.append(raw_event(99, 99, path="/blog/post-1"))

    events, report = run_preprocess(tmp_path, rows)

    assert dict(zip(events["path"], events["kind"])) == expected
    assert report["rows_per_kind"] == {"page": 2, "asset": 1, "feed": 1, "robots": 1, "affiliate": 1, "other": 1}


def test_events_file_columns_and_types(tmp_path: Path) -> None:
    rows = [raw_event(0, 1), raw_event(1, 2, status=None, bytes=None)]

    run_preprocess(tmp_path, rows)
    schema = pq.read_schema(tmp_path / "out" / "events.parquet")

    assert schema.names == EVENT_COLUMNS
    assert schema.field("status").type == pa.int16()
    assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert schema.field("session_id").type == pa.string()


def test_report_counts_sessions_clients_sources(tmp_path: Path) -> None:
    bot_ua = "python-requests/2.31.0"
    rows = [
        raw_event(0, 1, source="access.log.1"),
        raw_event(100, 2, source="access.log.1"),
        raw_event(200, 1, source="access.log"),  # same session, continued in the newer file
        raw_event(5000, 2, source="access.log"),  # new session after the gap
        raw_event(0, 3, source="access.log.1", user_agent=bot_ua),  # same IP, other client
        raw_event(0, 4, source="access.log.1", client_id="c0ffee0000000002"),
    ]

    events, report = run_preprocess(tmp_path, rows, "data.preprocess.inactivity_gap_s=1800")

    assert report["sessions"] == 4
    assert report["clients"] == 3
    assert report["ip_pseudonyms"] == 2
    assert report["sessions_per_source"] == {"access.log": 2, "access.log.1": 3}
    assert report["inactivity_gap_s"] == 1800.0
    assert events["session_id"].nunique() == 4


def test_empty_input_writes_empty_outputs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="src.data.preprocess"):
        events, report = run_preprocess(tmp_path, [])

    assert events.empty
    assert events.columns.tolist() == EVENT_COLUMNS
    assert report["rows_in"] == 0
    assert report["rows_out"] == 0
    assert report["sessions"] == 0
    assert report["sessions_per_source"] == {}
    assert any(r.levelno == logging.WARNING and "no rows" in r.getMessage() for r in caplog.records)


def test_input_missing_column_rejected(tmp_path: Path) -> None:
    table = pa.Table.from_pylist([raw_event(0, 1)], schema=RAW_EVENT_SCHEMA).drop_columns(["user_agent"])
    pq.write_table(table, tmp_path / "raw.parquet")

    with pytest.raises(ValueError, match="user_agent"):
        preprocess(tmp_path / "raw.parquet", tmp_path / "e.parquet", tmp_path / "r.json", compose_config(["data.mix_simulated=false"]))


def test_cli_reads_params_file(tmp_path: Path) -> None:
    raw = write_raw([raw_event(0, 1), raw_event(61, 2)], tmp_path / "raw.parquet")
    params = write_params(compose_config(["data.preprocess.inactivity_gap_s=60"]), tmp_path / "params.yaml")
    events_path, report_path = tmp_path / "events.parquet", tmp_path / "report.json"

    result = CliRunner().invoke(app, [str(raw), str(events_path), str(report_path), "--params", str(params)])

    assert result.exit_code == 0, result.output
    assert json.loads(report_path.read_text(encoding="utf-8"))["sessions"] == 2
    assert len(pd.read_parquet(events_path)) == 2
