"""Tests for the collect stage: sources, click events, collect() and its CLI, on real files."""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from omegaconf import DictConfig
from pydantic import ValidationError

from src.config import REPO_ROOT, compose_config, write_params
from src.data.click_event import DEFAULT_MAX_PATH_CHARS, MAX_PATH_CHARS_CONTEXT, ClickEvent
from src.data.collect import OutputWriteError, collect
from src.data.pseudonymize import Pseudonymizer
from src.data.schema import RAW_EVENT_SCHEMA
from src.data.sources import ACCESS_LOG, JSONL, discover_log_files, iter_lines

REAL_LOGS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "access_logs"
REAL_2015 = "semicomplete-2015-05.log"
REAL_2019 = "almhuette-2019-10.log"
TEST_KEY = "collect-test-key"


def log_line(client: str = "192.0.2.10", path: str = "/", second: int = 0, agent: str = "Mozilla/5.0") -> str:
    return f'{client} - - [10/Oct/2020:13:55:{second:02d} +0200] "GET {path} HTTP/1.1" 200 512 "-" "{agent}"'


def write_lines(path: Path, lines: list[str], compress: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@functools.lru_cache
def config(overrides: tuple[str, ...] = ()) -> DictConfig:
    """Compose the config once per set of overrides, because Hydra takes a few tenths of a second."""
    return compose_config(["data.mix_simulated=false", *overrides])


KEY_ENV = str(config().data.pseudonym_key_env)


def run_collect(log_dir: Path, out_dir: Path, overrides: tuple[str, ...] = ()) -> dict:
    cfg = config(overrides)
    return collect(
        log_dir,
        out_dir / "raw" / "clicks.parquet",
        out_dir / "raw" / "quarantine.jsonl",
        out_dir / "reports" / "collect.json",
        cfg,
    )


def read_quarantine(out_dir: Path) -> list[dict]:
    text = (out_dir / "raw" / "quarantine.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def file_entry(report: dict, name: str) -> dict:
    return next(entry for entry in report["files"] if entry["path"].endswith("/" + name))


@pytest.fixture(autouse=True)
def pseudonym_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, TEST_KEY)


@pytest.fixture
def pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer.from_config(config().data)


# --- sources -------------------------------------------------------------------------


def test_discover_sorted_dedup_skips_dirs(tmp_path):
    write_lines(tmp_path / "access.log", [log_line()])
    write_lines(tmp_path / "access.log.1", [log_line()])
    write_lines(tmp_path / "access.log.2.gz", [log_line()], compress=True)
    write_lines(tmp_path / "clicks.jsonl", ["{}"])
    write_lines(tmp_path / "notes.txt", ["not a log"])
    (tmp_path / "archive.log").mkdir()
    data_cfg = config().data

    files = discover_log_files(tmp_path, list(data_cfg.log_globs), list(data_cfg.jsonl_globs))

    assert [f.path.name for f in files] == ["access.log", "access.log.1", "access.log.2.gz", "clicks.jsonl"]
    assert [f.format for f in files] == [ACCESS_LOG, ACCESS_LOG, ACCESS_LOG, JSONL]
    assert [f.compressed for f in files] == [False, False, True, False]
    assert files[0].source == f"{tmp_path.name}/access.log"


def test_missing_log_dir_error(tmp_path):
    missing = tmp_path / "nowhere"

    with pytest.raises(FileNotFoundError) as caught:
        discover_log_files(missing, ["*.log"], ["*.jsonl"])

    assert str(missing) in str(caught.value)
    assert "paths.log_dir" in str(caught.value)


def test_no_matching_files_error(tmp_path):
    write_lines(tmp_path / "notes.txt", ["x"])

    with pytest.raises(FileNotFoundError) as caught:
        discover_log_files(tmp_path, ["*.log", "*.gz"], ["*.jsonl"])

    message = str(caught.value)
    assert str(tmp_path) in message
    assert "*.log" in message
    assert "*.gz" in message
    assert "data.log_globs" in message


def test_gzip_detected_by_magic_not_name(tmp_path):
    # A gzip file named like a plain rotated log, and a plain file named like gzip.
    write_lines(tmp_path / "access.log.1", [log_line(second=1), log_line(second=2)], compress=True)
    write_lines(tmp_path / "plain.log.gz", [log_line(second=3)])
    data_cfg = config().data

    files = discover_log_files(tmp_path, list(data_cfg.log_globs), list(data_cfg.jsonl_globs))
    lines = {f.path.name: list(iter_lines(f, 1024)) for f in files}

    assert {f.path.name: f.compressed for f in files} == {"access.log.1": True, "plain.log.gz": False}
    assert lines["access.log.1"] == [log_line(second=1).encode(), log_line(second=2).encode()]
    assert lines["plain.log.gz"] == [log_line(second=3).encode()]


def test_gzip_lines_split_across_small_reads(tmp_path):
    expected = [log_line(second=i, path="/p" * i) for i in range(30)]
    write_lines(tmp_path / "a.log.gz", expected, compress=True)
    (log_file,) = discover_log_files(tmp_path, ["*.gz"], [])

    assert [line.decode() for line in iter_lines(log_file, 7)] == expected


def test_crlf_and_missing_final_newline(tmp_path):
    (tmp_path / "a.log").write_bytes(b"one\r\ntwo\r\nthree")
    (log_file,) = discover_log_files(tmp_path, ["*.log"], [])

    assert list(iter_lines(log_file, 1024)) == [b"one", b"two", b"three"]


# --- collect on access logs ------------------------------------------------------------


def test_collect_rotated_and_gzip_files(tmp_path):
    logs = tmp_path / "logs"
    write_lines(logs / "access.log", [log_line(second=1), log_line(second=2)])
    write_lines(logs / "access.log.1", [log_line(second=3)])
    write_lines(logs / "access.log.2.gz", [log_line(second=4), log_line(second=5)], compress=True)
    write_lines(logs / "rotated-without-suffix.log.3", [log_line(second=6)], compress=True)

    report = run_collect(logs, tmp_path / "out")

    assert report["totals"] == {"lines": 6, "parsed": 6, "quarantined": 0, "read_errors": 0}
    assert file_entry(report, "access.log.2.gz")["compressed"] is True
    assert file_entry(report, "rotated-without-suffix.log.3")["compressed"] is True
    table = pq.read_table(tmp_path / "out" / "raw" / "clicks.parquet")
    assert table.num_rows == 6
    assert sorted(table.column("source").to_pylist())[0] == "logs/access.log"


def test_raw_events_schema_and_values(tmp_path, pseudonymizer):
    logs = tmp_path / "logs"
    write_lines(logs / "access.log", [log_line(client="192.0.2.10", second=7)])

    run_collect(logs, tmp_path / "out")

    table = pq.read_table(tmp_path / "out" / "raw" / "clicks.parquet")
    assert table.schema.equals(RAW_EVENT_SCHEMA)
    (row,) = table.to_pylist()
    assert row["ts"] == datetime(2020, 10, 10, 11, 55, 7, tzinfo=UTC)
    assert row["client_id"] == pseudonymizer.client_id("192.0.2.10")
    assert row["prefix_id"] == pseudonymizer.prefix_id("192.0.2.10")
    assert row["source"] == "logs/access.log"
    assert row["line_no"] == 1
    assert row["source_format"] == "combined"
    assert row["referrer"] == ""


def test_bad_lines_quarantined_not_fatal(tmp_path):
    logs = tmp_path / "logs"
    lines = [log_line(second=1), "", "garbage line", log_line(second=2)[:-5], log_line(second=3)]
    write_lines(logs / "access.log", lines)

    report = run_collect(logs, tmp_path / "out")

    entry = file_entry(report, "access.log")
    assert entry["lines"] == 5
    assert entry["parsed"] == 2
    assert entry["quarantined"] == 3
    assert entry["quarantine_reasons"] == {
        "empty_line": 1,
        "unrecognized_format": 1,
        "unterminated_quoted_field": 1,
    }
    quarantined = read_quarantine(tmp_path / "out")
    assert [(q["line_no"], q["reason"]) for q in quarantined] == [
        (2, "empty_line"),
        (3, "unrecognized_format"),
        (4, "unterminated_quoted_field"),
    ]
    assert all(q["file"] == "logs/access.log" for q in quarantined)
    assert quarantined[1]["excerpt"] == "garbage line"
    table = pq.read_table(tmp_path / "out" / "raw" / "clicks.parquet")
    assert table.column("line_no").to_pylist() == [1, 5]


def test_quarantine_excerpt_redacted_and_truncated(tmp_path, pseudonymizer):
    logs = tmp_path / "logs"
    bad_v4 = log_line(client="203.0.113.77", agent="seen from 198.51.100.23")[:-1]
    bad_v6 = log_line(client="2001:db8:abcd::42", agent="via [2001:db8::99]")[:-1]
    bad_host = log_line(client="crawl-203-0-113-5.example.net")[:-1]
    write_lines(logs / "access.log", [bad_v4, bad_v6, bad_host])

    run_collect(logs, tmp_path / "out", ("data.quarantine_excerpt_chars=60",))

    raw_text = (tmp_path / "out" / "raw" / "quarantine.jsonl").read_text()
    for secret in ("203.0.113.77", "198.51.100.23", "2001:db8:abcd::42", "2001:db8::99", "crawl-203-0-113-5"):
        assert secret not in raw_text
    excerpts = [q["excerpt"] for q in read_quarantine(tmp_path / "out")]
    assert all(len(excerpt) <= 60 for excerpt in excerpts)
    assert excerpts[0].startswith(f"ip:{pseudonymizer.client_id('203.0.113.77')} - - [10/Oct/2020")
    assert excerpts[2].startswith(f"ip:{pseudonymizer.client_id('crawl-203-0-113-5.example.net')} ")


def test_full_excerpt_redacts_inner_ips(tmp_path, pseudonymizer):
    logs = tmp_path / "logs"
    write_lines(logs / "access.log", [log_line(agent="via [2001:db8::99] and 198.51.100.23")[:-1]])

    run_collect(logs, tmp_path / "out")

    (entry,) = read_quarantine(tmp_path / "out")
    assert f"[ip:{pseudonymizer.client_id('2001:db8::99')}]" in entry["excerpt"]
    assert f"ip:{pseudonymizer.client_id('198.51.100.23')}" in entry["excerpt"]


def test_batches_written_as_row_groups(tmp_path):
    logs = tmp_path / "logs"
    write_lines(logs / "a.log", [log_line(second=i) for i in range(5)])
    write_lines(logs / "b.log", [log_line(second=i) for i in range(4)])

    run_collect(logs, tmp_path / "out", ("data.write_batch_rows=2",))

    parquet_file = pq.ParquetFile(tmp_path / "out" / "raw" / "clicks.parquet")
    assert parquet_file.metadata.num_rows == 9
    assert parquet_file.metadata.num_row_groups == 5
    assert parquet_file.schema_arrow.equals(RAW_EVENT_SCHEMA)


def test_truncated_gzip_keeps_lines_read(tmp_path):
    logs = tmp_path / "logs"
    lines = [log_line(second=i % 60, path=f"/page/{i}") for i in range(3000)]
    compressed = gzip.compress(("\n".join(lines) + "\n").encode())
    logs.mkdir()
    (logs / "a-broken.log.gz").write_bytes(compressed[: len(compressed) // 2])
    write_lines(logs / "b-after.log", [log_line()])

    report = run_collect(logs, tmp_path / "out", ("data.gzip_read_bytes=4096",))

    broken = file_entry(report, "a-broken.log.gz")
    assert broken["read_error"] == "truncated_gzip"
    assert 0 < broken["parsed"] < len(lines)
    assert broken["parsed"] + broken["quarantined"] == broken["lines"]
    assert broken["quarantine_reasons"]["truncated_gzip"] == 1
    assert file_entry(report, "b-after.log")["parsed"] == 1
    assert report["totals"]["read_errors"] == 1
    quarantined = read_quarantine(tmp_path / "out")
    assert any(q["reason"] == "truncated_gzip" and q["line_no"] == broken["lines"] for q in quarantined)
    table = pq.read_table(tmp_path / "out" / "raw" / "clicks.parquet")
    paths = table.column("path").to_pylist()
    assert paths[: broken["parsed"]] == [f"/page/{i}" for i in range(broken["parsed"])]


def test_corrupt_gzip_recorded(tmp_path):
    logs = tmp_path / "logs"
    compressed = bytearray(gzip.compress(("\n".join(log_line() for _ in range(50)) + "\n").encode()))
    compressed[-8] ^= 0xFF  # break the CRC-32 in the gzip trailer
    logs.mkdir()
    (logs / "a.log.gz").write_bytes(bytes(compressed))

    report = run_collect(logs, tmp_path / "out")

    entry = file_entry(report, "a.log.gz")
    assert entry["read_error"] == "corrupt_gzip"
    assert entry["parsed"] + entry["quarantined"] == entry["lines"]


def test_missing_log_dir_names_dir_and_globs(tmp_path):
    with pytest.raises(FileNotFoundError, match="log directory not found"):
        run_collect(tmp_path / "missing", tmp_path / "out")


def test_unwritable_output_clear_error(tmp_path):
    logs = tmp_path / "logs"
    write_lines(logs / "access.log", [log_line()])
    blocker = tmp_path / "out"
    blocker.write_text("a file where a directory is expected")

    with pytest.raises(OutputWriteError, match="cannot write the output"):
        run_collect(logs, blocker)


def test_failed_run_leaves_no_partial_outputs(tmp_path):
    logs = tmp_path / "logs"
    write_lines(logs / "access.log", [log_line()])
    out = tmp_path / "out"
    (out / "reports" / "collect.json").mkdir(parents=True)

    with pytest.raises(OutputWriteError):
        run_collect(logs, out)

    leftovers = [p.name for p in out.rglob("*") if p.name.endswith(".partial")]
    assert leftovers == []


# --- JSON-lines click events -----------------------------------------------------------


def click(**fields) -> str:
    event = {"ts": "2020-10-10T13:55:00+02:00", "client_ip": "192.0.2.10", "user_agent": "UA", "path": "/go/x"}
    event.update(fields)
    return json.dumps({key: value for key, value in event.items() if value is not ...})


def test_jsonl_valid_and_invalid_rows(tmp_path, pseudonymizer):
    logs = tmp_path / "logs"
    rows = [
        click(),
        click(ts=1602330900, method="POST", status=302, bytes=0, referrer="http://example.com/", protocol="HTTP/2"),
        "{not json",
        click(ts=...),
        click(ts="2020-10-10T13:55:00"),
        click(extra_field=1),
        click(client_ip="999.1.1.1"),
        click(path="no-slash"),
        click(status=99),
        "[1, 2]",
        "",
    ]
    write_lines(logs / "clicks.jsonl", rows)

    report = run_collect(logs, tmp_path / "out")

    entry = file_entry(report, "clicks.jsonl")
    assert entry["format"] == "jsonl"
    assert entry["parsed"] == 2
    assert entry["quarantine_reasons"] == {
        "empty_line": 1,
        "invalid_client_ip": 1,
        "invalid_json": 1,
        "invalid_path": 1,
        "invalid_status": 1,
        "invalid_ts": 1,
        "missing_ts": 1,
        "not_a_json_object": 1,
        "unknown_field": 1,
    }
    rows_out = pq.read_table(tmp_path / "out" / "raw" / "clicks.parquet").to_pylist()
    assert rows_out[0]["ts"] == datetime(2020, 10, 10, 11, 55, tzinfo=UTC)
    assert rows_out[0]["method"] == "GET"
    assert rows_out[0]["protocol"] == ""
    assert rows_out[0]["status"] is None
    assert rows_out[0]["source_format"] == "jsonl"
    assert rows_out[0]["client_id"] == pseudonymizer.client_id("192.0.2.10")
    assert rows_out[1]["ts"] == datetime(2020, 10, 10, 11, 55, tzinfo=UTC)
    assert (rows_out[1]["method"], rows_out[1]["status"], rows_out[1]["bytes"]) == ("POST", 302, 0)
    assert "192.0.2.10" not in (tmp_path / "out" / "raw" / "quarantine.jsonl").read_text()


def test_jsonl_gzip_file(tmp_path):
    logs = tmp_path / "logs"
    write_lines(logs / "clicks.jsonl.gz", [click(), click()], compress=True)

    report = run_collect(logs, tmp_path / "out")

    assert file_entry(report, "clicks.jsonl.gz")["format"] == "jsonl"
    assert report["totals"]["parsed"] == 2


def test_click_event_naive_ts_message():
    with pytest.raises(ValidationError) as caught:
        ClickEvent.model_validate_json(click(ts="2020-10-10T13:55:00"))

    assert "add one" in str(caught.value)


@pytest.mark.parametrize(
    "ts", ["2020-10-10T11:55:00Z", "2020-10-10T13:55:00+02:00", "2020-10-10T06:55:00-05:00", 1602330900, 1602330900.0]
)
def test_click_event_ts_forms_to_utc(ts):
    event = ClickEvent.model_validate_json(click(ts=ts))

    assert event.ts == datetime(2020, 10, 10, 11, 55, tzinfo=UTC)
    assert event.ts.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ts", True),
        ("ts", "yesterday"),
        ("client_ip", "example.com"),
        ("method", "GE T"),
        ("protocol", "HTTP one"),
        ("status", 600),
        ("status", "200"),
        ("bytes", -1),
        ("user_agent", ...),
    ],
)
def test_click_event_rejects(field, value):
    with pytest.raises(ValidationError):
        ClickEvent.model_validate_json(click(**{field: value}))


def test_click_event_ip_forms_normalized():
    assert ClickEvent.model_validate_json(click(client_ip="::ffff:192.0.2.1")).client_ip == "192.0.2.1"
    assert ClickEvent.model_validate_json(click(client_ip="[2001:DB8::1]")).client_ip == "2001:db8::1"


def test_click_event_path_limit_from_context():
    long_path = "/" + "a" * 20

    with pytest.raises(ValidationError, match="maximum is 10"):
        ClickEvent.model_validate_json(click(path=long_path), context={MAX_PATH_CHARS_CONTEXT: 10})
    assert ClickEvent.model_validate_json(click(path=long_path)).path == long_path


def test_click_event_default_limit_matches_config():
    assert DEFAULT_MAX_PATH_CHARS == config().data.click_event_max_path_chars


def test_jsonl_path_limit_from_config(tmp_path):
    logs = tmp_path / "logs"
    write_lines(logs / "clicks.jsonl", [click(path="/" + "a" * 50), click(path="/short")])

    report = run_collect(logs, tmp_path / "out", ("data.click_event_max_path_chars=20",))

    assert file_entry(report, "clicks.jsonl")["quarantine_reasons"] == {"invalid_path": 1}


# --- CLI -------------------------------------------------------------------------------


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, KEY_ENV: TEST_KEY}
    return subprocess.run(
        [sys.executable, "-m", "src.data.collect", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_cli_writes_outputs(tmp_path):
    logs = tmp_path / "logs"
    write_lines(logs / "access.log", [log_line(), "bad"])
    params = write_params(config(), tmp_path / "params.yaml")
    out = tmp_path / "out"

    result = run_cli(
        [str(logs), str(out / "c.parquet"), str(out / "q.jsonl"), str(out / "r.json"), "--params", str(params)],
        cwd=REPO_ROOT,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads((out / "r.json").read_text())["totals"] == {
        "lines": 2, "parsed": 1, "quarantined": 1, "read_errors": 0,
    }  # fmt: skip
    assert "logs/access.log (access_log): 2 lines, 1 parsed, 1 quarantined" in result.stderr


def test_cli_missing_log_dir_exit_code(tmp_path):
    params = write_params(config(), tmp_path / "params.yaml")

    result = run_cli(
        [str(tmp_path / "nope"), "c.parquet", "q.jsonl", "r.json", "--params", str(params)], cwd=REPO_ROOT
    )

    assert result.returncode == 1
    assert "log directory not found" in result.stderr
    assert "Traceback" not in result.stderr


# --- real logs -------------------------------------------------------------------------


def ipv4_literals(text: str) -> set[str]:
    """Return every dotted quad in `text`, including overlapping ones such as in 1.2.3.4.5."""
    return set(re.findall(r"(?=(?<!\d)(\d{1,3}(?:\.\d{1,3}){3})(?!\d))", text))


def first_field_ips(path: Path) -> set[str]:
    with path.open("rb") as handle:
        return {line.split(b" ", 1)[0].decode() for line in handle if line.strip()}


@pytest.fixture(scope="module")
def real_collect(tmp_path_factory):
    if not (REAL_LOGS / REAL_2015).is_file() or not (REAL_LOGS / REAL_2019).is_file():
        pytest.skip(f"real access logs not found in {REAL_LOGS}")
    out = tmp_path_factory.mktemp("real")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(KEY_ENV, TEST_KEY)
        report = run_collect(REAL_LOGS, out)
    return report, out


@pytest.mark.real_logs
def test_real_logs_counts(real_collect):
    report, _ = real_collect

    assert report["totals"]["lines"] == 20_000
    assert report["totals"]["parsed"] + report["totals"]["quarantined"] == 20_000
    for entry in report["files"]:
        assert entry["parsed"] + entry["quarantined"] == entry["lines"] == 10_000
        assert entry["read_error"] is None


@pytest.mark.real_logs
def test_real_logs_truncated_line_8899(real_collect):
    _, out = real_collect

    quarantined = read_quarantine(out)
    matches = [q for q in quarantined if q["file"] == f"access_logs/{REAL_2015}" and q["line_no"] == 8899]
    assert len(matches) == 1
    assert matches[0]["reason"] == "unterminated_quoted_field"


@pytest.mark.real_logs
def test_real_logs_2019_in_utc(real_collect):
    _, out = real_collect

    table = pq.read_table(out / "raw" / "clicks.parquet", filters=[("source", "=", f"access_logs/{REAL_2019}")])
    rows = {row["line_no"]: row["ts"] for row in table.select(["line_no", "ts"]).to_pylist()}
    # Line 1 is logged as [14/Oct/2019:10:50:18 +0200].
    assert rows[1] == datetime(2019, 10, 14, 8, 50, 18, tzinfo=UTC)
    with (REAL_LOGS / REAL_2019).open(encoding="utf-8", errors="backslashreplace") as handle:
        last_time = re.search(r"\[(\d+/\w+/\d+:\d+:\d+:\d+) \+0200\]", handle.readlines()[-1])[1]
    local = datetime.strptime(last_time, "%d/%b/%Y:%H:%M:%S")
    assert rows[10_000] == local.replace(tzinfo=UTC) - timedelta(hours=2)


@pytest.mark.real_logs
def test_real_logs_no_raw_ip_in_outputs(real_collect):
    _, out = real_collect
    ips = first_field_ips(REAL_LOGS / REAL_2015) | first_field_ips(REAL_LOGS / REAL_2019)
    assert len(ips) > 1_000

    parquet_bytes = (out / "raw" / "clicks.parquet").read_bytes()
    quarantine_bytes = (out / "raw" / "quarantine.jsonl").read_bytes()
    report_bytes = (out / "reports" / "collect.json").read_bytes()
    table = pq.read_table(out / "raw" / "clicks.parquet")
    text_values = []
    for name in ("client_id", "prefix_id", "path", "referrer", "user_agent", "source"):
        text_values.extend(table.column(name).to_pylist())

    assert not [ip for ip in ips if ip.encode() in parquet_bytes]
    assert not ipv4_literals(quarantine_bytes.decode()) & ips
    assert not ipv4_literals(report_bytes.decode()) & ips
    assert not ipv4_literals("\n".join(text_values)) & ips
