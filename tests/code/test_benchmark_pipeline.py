"""Tests of benchmarks/pipeline.py: the log replay, and a smoke run on a few thousand lines.

The smoke runs check the outputs and their consistency, never the timings.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import import_script

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_LOGS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "access_logs"
REPLAY_NETWORK = ipaddress.ip_network("198.18.0.0/15")
SMOKE_LINES = 3000


bench = import_script(REPO_ROOT / "benchmarks" / "pipeline.py", "benchmark_pipeline")

SOURCE_LINES = [
    b'192.0.2.10 - - [30/Dec/2019:23:59:58 +0100] "GET / HTTP/1.1" 200 512 "-" "Mozilla/5.0 (X11)"\n',
    b'192.0.2.10 - - [31/Dec/2019:00:00:01 +0100] "GET /go/shop HTTP/1.1" 302 0 "https://example.org/" "Mozilla/5.0 (X11)"\n',
    b'2001:db8::7 - frank [30/Dec/2019:12:00:00 +0100] "POST /login HTTP/1.1" 401 33 "-" "curl/8.0"\n',
    b'crawler.example.net - - [30/Dec/2019:12:00:01 +0100] "GET /robots.txt HTTP/1.0" 200 40 "-" "Bot"\n',
    b"this line is not an access log line\n",
    # The last line has no line break; the replay adds one.
    b'192.0.2.11 - - [30/Dec/2019:13:00:00 +0100] "GET /a b c" 400 - "-" "-"',
]


def write_source(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "source.log"
    path.write_bytes(b"".join(SOURCE_LINES))
    return path


def shifted(line: bytes, days: int) -> bytes:
    """Return `line` with the date of its time shifted by `days`, as the replay should write it."""
    match = bench.LINE_RE.match(line)
    day = date(int(match.group(5)), bench.MONTHS.index(match.group(4).decode()) + 1, int(match.group(3)))
    new_day = day + timedelta(days=days)
    text = f"{new_day.day:02d}/{bench.MONTHS[new_day.month - 1]}/{new_day.year}".encode()
    return match.group(1) + match.group(2) + text + match.group(6)


def test_replay_rewrites_clients_and_dates(tmp_path: Path) -> None:
    source = write_source(tmp_path / "src")
    target = tmp_path / "out" / "replay.log"
    rounds = 3

    summary = bench.build_replay([source], target, lines=len(SOURCE_LINES) * rounds - 1)

    written = target.read_bytes().splitlines(keepends=True)
    assert len(written) == summary.lines == len(SOURCE_LINES) * rounds - 1
    assert summary.rounds == rounds
    assert summary.days_per_round == 2
    assert summary.lines_kept_verbatim == 1
    assert summary.lines_with_non_ip_client == 1

    seen: set[bytes] = set()
    for round_index in range(rounds):
        block = written[round_index * len(SOURCE_LINES) : (round_index + 1) * len(SOURCE_LINES)]
        clients = [line.split(b" ", 1)[0] for line in block]
        assert clients[0] == clients[1], "one source client must keep one address within a round"
        for index in (0, 2):
            assert ipaddress.ip_address(clients[index].decode()) in REPLAY_NETWORK
        assert not {clients[0], clients[2]} & seen, "an address was reused in a later round"
        seen.update({clients[0], clients[2]})
        assert clients[3] == b"crawler.example.net"
        assert block[4] == SOURCE_LINES[4]

        shift = round_index * summary.days_per_round
        for index, line in enumerate(block):
            if index == 4:
                continue
            original = SOURCE_LINES[index] if SOURCE_LINES[index].endswith(b"\n") else SOURCE_LINES[index] + b"\n"
            expected = shifted(original, shift)
            assert line.split(b" ", 1)[1] == expected.split(b" ", 1)[1]


def test_replay_date_crosses_year_end(tmp_path: Path) -> None:
    source = write_source(tmp_path / "src")
    target = tmp_path / "replay.log"

    bench.build_replay([source], target, lines=len(SOURCE_LINES) * 2, days_per_round=2)

    second_round = target.read_bytes().splitlines()[len(SOURCE_LINES) :]
    assert b"[01/Jan/2020:23:59:58 +0100]" in second_round[0]
    assert b"[02/Jan/2020:00:00:01 +0100]" in second_round[1]


def test_days_per_round_uses_longest_file(tmp_path: Path) -> None:
    short = tmp_path / "short.log"
    short.write_bytes(SOURCE_LINES[0] + SOURCE_LINES[1])
    long = tmp_path / "long.log"
    long.write_bytes(SOURCE_LINES[0].replace(b"30/Dec/2019", b"01/Mar/2015") + SOURCE_LINES[0].replace(b"30/Dec/2019", b"05/Mar/2015"))

    summary = bench.build_replay([short, long], tmp_path / "replay.log", lines=4)

    assert summary.days_per_round == 5


def test_address_pool_exhausted() -> None:
    pool = bench.AddressPool(ipaddress.IPv4Network("192.0.2.0/30"))

    assert [pool.take(), pool.take()] == [b"192.0.2.1", b"192.0.2.2"]
    with pytest.raises(ValueError, match="--lines"):
        pool.take()


def test_replay_rejects_empty_source(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")

    with pytest.raises(ValueError, match="no lines"):
        bench.build_replay([empty], tmp_path / "replay.log", lines=10)


def check_smoke_outputs(out_dir: Path, stdout: str) -> None:
    """Check the JSON, the Markdown and the stage outputs of a smoke run of SMOKE_LINES lines."""
    report = json.loads((out_dir / "pipeline.json").read_text(encoding="utf-8"))
    assert report["replay"]["lines"] == SMOKE_LINES
    assert report["collect_totals"]["lines"] == SMOKE_LINES
    assert report["collect_totals"]["parsed"] + report["collect_totals"]["quarantined"] == SMOKE_LINES
    assert [stage["stage"] for stage in report["stages"]] == list(bench.STAGES)
    for stage in report["stages"]:
        assert stage["seconds"] > 0
        assert stage["peak_rss_mib"] >= stage["rss_after_imports_mib"] > 0
    assert set(report["reads"]) == {"plain_read", "split_read"}
    assert report["machine"]["nproc"] >= 1
    assert "--lines 3000" in report["command"]

    markdown = (out_dir / "pipeline.md").read_text(encoding="utf-8")
    assert markdown == stdout
    for stage in bench.STAGES:
        assert f"| {stage} |" in markdown

    events = pd.read_parquet(out_dir / "data" / "events.parquet")
    features = pd.read_parquet(out_dir / "data" / "features.parquet")
    assert len(events) == report["collect_totals"]["parsed"]
    assert len(features) == len(events)


def test_benchmark_smoke_real_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not REAL_LOGS.is_dir() or not any(REAL_LOGS.glob("*.log")):
        pytest.skip(f"real access logs not found at {REAL_LOGS}; they live beside the repository in shared/data")
    out_dir = tmp_path / "bench"

    bench.main(["--lines", str(SMOKE_LINES), "--out-dir", str(out_dir), "--source-dir", str(REAL_LOGS), "--read-repeats", "1"])

    check_smoke_outputs(out_dir, capsys.readouterr().out)
    replay_clients = {line.split(b" ", 1)[0] for line in (out_dir / "logs" / "replay.log").read_bytes().splitlines()}
    assert all(ipaddress.ip_address(client.decode()) in REPLAY_NETWORK for client in replay_clients)


def test_benchmark_smoke_simulated_fallback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "bench"

    bench.main(
        ["--lines", str(SMOKE_LINES), "--out-dir", str(out_dir), "--source-dir", str(tmp_path / "no_logs"),
         "--sim-scale", "0.1", "--read-repeats", "1"]
    )

    check_smoke_outputs(out_dir, capsys.readouterr().out)
    report = json.loads((out_dir / "pipeline.json").read_text(encoding="utf-8"))
    assert report["replay"]["source_files"] == [str(out_dir / "simulated" / "access.log")]
