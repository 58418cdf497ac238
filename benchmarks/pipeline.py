"""Benchmark the collect, preprocess and featurize stages on a replayed access log.

The benchmark builds a log of `--lines` lines by replaying the real access logs (or, when
they are absent, a simulated log) round after round. Each round gives every client a fresh
address from 198.18.0.0/15 (RFC 2544 benchmarking) and shifts the timestamps by whole days,
so rounds add new clients and sessions instead of repeating the same ones. IPv6 clients get
IPv4 addresses too, and a client field that is not an IP address is kept. Every other byte of
a line is kept, except that a last line without a line break gets one.

It then measures, in the same run:

- a plain line read of the replayed file (`for line in handle: pass`) and a read that also
  splits each line (`len(line.split())`), both in this process, median of `--read-repeats`;
- each stage in a subprocess of its own. The stage's wall time excludes interpreter start-up
  and imports. Peak memory is the subprocess's maximum resident set size, read with
  `os.wait4` (the per-child `ru_maxrss` of getrusage).

Rates are log lines per second for every stage, so they compare with the read rates. The
Markdown table and a JSON file go to `--out-dir`, with the machine facts and the command.

    python benchmarks/pipeline.py --lines 1000000 --out-dir /tmp/bench
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

from src.config import REPO_ROOT, compose_config, load_params, write_params

logger = logging.getLogger("benchmarks.pipeline")

DEFAULT_LINES = 1_000_000
DEFAULT_SOURCE_DIR = REPO_ROOT.parent / "shared" / "data" / "access_logs"
SOURCE_GLOB = "*.log"
REPLAY_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
DEFAULT_READ_REPEATS = 3
DEFAULT_SIM_SCALE = 1.0
STAGES = ("collect", "preprocess", "featurize")
KIB_PER_MIB = 1024
WRITE_BUFFER_BYTES = 1 << 20

# Month names of the Apache time format (C locale, independent of the machine's locale).
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Client field, the bytes up to the opening bracket of the time, and the date part of
# `[17/May/2015:10:05:03 +0000]`. The time of day and the UTC offset follow the ":".
LINE_RE = re.compile(rb"^(\S+)( [^\[\n]*\[)(\d{2})/([A-Z][a-z]{2})/(\d{4})(:.*)$", re.DOTALL)


@dataclass(frozen=True)
class SourceLine:
    """One source line split into the parts that a replay round rewrites.

    `client` is None when the line does not match the access log layout, and such a line
    is written unchanged in every round. `client_is_ip` is False for a host name or garbage,
    which is kept unchanged while the date is still shifted.
    """

    raw: bytes
    client: bytes | None = None
    client_is_ip: bool = False
    middle: bytes = b""
    day: date | None = None
    tail: bytes = b""


@dataclass
class ReplaySummary:
    """Counts and settings of one replayed log written by `build_replay`."""

    path: str
    source_files: list[str]
    source_lines: int
    lines: int
    rounds: int
    days_per_round: int
    fresh_addresses: int
    lines_kept_verbatim: int
    lines_with_non_ip_client: int


@dataclass
class StageResult:
    """Timing and memory of one stage subprocess."""

    stage: str
    seconds: float
    lines_per_s: float
    ratio_to_plain_read: float
    ratio_to_split_read: float
    peak_rss_mib: float
    rss_after_imports_mib: float


def split_source_line(raw: bytes) -> SourceLine:
    """Split one log line, newline included, into client, date and the bytes around them."""
    match = LINE_RE.match(raw)
    if match is None or match.group(4).decode() not in MONTHS:
        return SourceLine(raw)

    client, middle, day, month, year, tail = match.groups()
    try:
        ipaddress.ip_address(client.decode("ascii"))
        client_is_ip = True
    except ValueError:
        client_is_ip = False
    try:
        parsed = date(int(year), MONTHS.index(month.decode()) + 1, int(day))
    except ValueError:
        return SourceLine(raw)
    return SourceLine(raw, client, client_is_ip, middle, parsed, tail)


def read_source_lines(files: Sequence[Path]) -> list[list[SourceLine]]:
    """Read and split every line of each file. A last line without a line break gets one."""
    per_file = []
    for path in files:
        with path.open("rb") as handle:
            per_file.append([split_source_line(raw if raw.endswith(b"\n") else raw + b"\n") for raw in handle])
    if not any(per_file):
        raise ValueError(f"the source files {[str(p) for p in files]} have no lines. Pass a --source-dir with non-empty logs.")
    return per_file


def default_days_per_round(per_file: Sequence[Sequence[SourceLine]]) -> int:
    """Return the maximum number of days that one source file covers, so a file's rounds do not overlap in time."""
    spans = [1]
    for lines in per_file:
        days = [line.day for line in lines if line.day is not None]
        if days:
            spans.append((max(days) - min(days)).days + 1)
    return max(spans)


class AddressPool:
    """Hand out each address of REPLAY_NETWORK once, in order, skipping network and broadcast."""

    def __init__(self, network: ipaddress.IPv4Network = REPLAY_NETWORK) -> None:
        self._network = network
        self._next = int(network.network_address) + 1
        self._last = int(network.broadcast_address) - 1
        self.used = 0

    def take(self) -> bytes:
        """Return the next unused address as ASCII bytes. Raises ValueError when none is left."""
        if self._next > self._last:
            raise ValueError(
                f"all {self.used} addresses of {self._network} are used, so the replay cannot give "
                "every client of every round a fresh address. Pass a smaller --lines."
            )
        address = ipaddress.IPv4Address(self._next)
        self._next += 1
        self.used += 1
        return str(address).encode("ascii")


def format_day(day: date) -> bytes:
    """Format a date as the `dd/Mon/yyyy` part of an Apache time."""
    return f"{day.day:02d}/{MONTHS[day.month - 1]}/{day.year:04d}".encode("ascii")


def replay_round(lines: Sequence[SourceLine], shift: timedelta, pool: AddressPool) -> Callable[[SourceLine], bytes]:
    """Return a function that rewrites one source line for a round shifted by `shift`.

    Within a round, every source client address maps to one fresh address from `pool`.
    """
    addresses: dict[bytes, bytes] = {}
    days: dict[date, bytes] = {}

    def rewrite(line: SourceLine) -> bytes:
        if line.client is None or line.day is None:
            return line.raw
        client = line.client
        if line.client_is_ip:
            if client not in addresses:
                addresses[client] = pool.take()
            client = addresses[client]
        if line.day not in days:
            days[line.day] = format_day(line.day + shift)
        return client + line.middle + days[line.day] + line.tail

    return rewrite


def build_replay(files: Sequence[Path], target: Path, lines: int, days_per_round: int | None = None) -> ReplaySummary:
    """Write `lines` lines to `target` by replaying `files`, as the module docstring describes.

    `days_per_round` defaults to the maximum number of days that one source file covers.
    """
    if lines < 1:
        raise ValueError(f"invalid --lines {lines}: it must be at least 1")
    per_file = read_source_lines(files)
    source = [line for lines in per_file for line in lines]
    step = days_per_round if days_per_round is not None else default_days_per_round(per_file)
    if step < 1:
        raise ValueError(f"invalid --days-per-round {step}: it must be at least 1")

    pool = AddressPool()
    written = rounds = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb", buffering=WRITE_BUFFER_BYTES) as out:
        while written < lines:
            rewrite = replay_round(source, timedelta(days=rounds * step), pool)
            for line in source[: lines - written]:
                out.write(rewrite(line))
            written += min(len(source), lines - written)
            rounds += 1

    verbatim = sum(line.client is None for line in source)
    non_ip = sum(line.client is not None and not line.client_is_ip for line in source)
    return ReplaySummary(
        str(target), [str(p) for p in files], len(source), written, rounds, step, pool.used, verbatim, non_ip
    )


def find_source_files(source_dir: Path, out_dir: Path, sim_scale: float) -> list[Path]:
    """Return the `*.log` files of `source_dir`, or simulate a log into `out_dir` when there are none."""
    files = sorted(source_dir.glob(SOURCE_GLOB)) if source_dir.is_dir() else []
    if files:
        return files

    from src.data.simulate import simulate

    logger.info("no %s files in %s, so the replay uses a simulated log (scale %g)", SOURCE_GLOB, source_dir, sim_scale)
    summary = simulate(compose_config(), out_dir / "simulated", scale=sim_scale)
    return [summary.log_path]


def time_plain_reads(path: Path, repeats: int) -> dict[str, float]:
    """Return the median seconds of a plain line read and of a read that splits every line."""
    def plain() -> None:
        with path.open("rb") as handle:
            for _line in handle:
                pass

    def split() -> None:
        with path.open("rb") as handle:
            for line in handle:
                len(line.split())

    timings = {"plain_read": [], "split_read": []}
    for _ in range(repeats):
        for name, read in (("plain_read", plain), ("split_read", split)):
            started = time.perf_counter()
            read()
            timings[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in timings.items()}


def stage_paths(out_dir: Path) -> dict[str, Path]:
    """Return the input and output paths of the benchmarked stages under `out_dir`."""
    return {
        "log_dir": out_dir / "logs",
        "params": out_dir / "params.yaml",
        "raw_events": out_dir / "data" / "raw.parquet",
        "quarantine": out_dir / "data" / "quarantine.jsonl",
        "collect_report": out_dir / "reports" / "collect.json",
        "events": out_dir / "data" / "events.parquet",
        "preprocess_report": out_dir / "reports" / "preprocess.json",
        "features": out_dir / "data" / "features.parquet",
    }


def run_stage(stage: str, out_dir: Path) -> dict[str, Any]:
    """Run one stage in this process and return its seconds and resident memory after imports.

    This is the body of the stage subprocess, so only the stage's own module is imported.
    """
    paths = stage_paths(out_dir)
    cfg = load_params(paths["params"])
    if stage == "collect":
        from src.data.collect import collect as stage_function

        arguments = (paths["log_dir"], paths["raw_events"], paths["quarantine"], paths["collect_report"], cfg)
    elif stage == "preprocess":
        from src.data.preprocess import preprocess as stage_function

        arguments = (paths["raw_events"], paths["events"], paths["preprocess_report"], cfg)
    elif stage == "featurize":
        from src.features.featurize import featurize as stage_function

        arguments = (paths["events"], paths["features"], cfg)
    else:
        raise ValueError(f"unknown stage {stage!r}: expected one of {list(STAGES)}")

    rss_after_imports_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    stage_function(*arguments)
    seconds = time.perf_counter() - started
    return {"stage": stage, "seconds": seconds, "rss_after_imports_kib": rss_after_imports_kib}


def spawn_stage(stage: str, out_dir: Path) -> tuple[dict[str, Any], int]:
    """Run a stage in a subprocess and return its result and its peak resident memory in KiB.

    The subprocess's log goes to `<out_dir>/<stage>.log`. Raises RuntimeError naming that
    log when the stage fails.
    """
    command = [sys.executable, str(Path(__file__).resolve()), "--run-stage", stage, "--out-dir", str(out_dir)]
    log_path = out_dir / f"{stage}.log"
    with log_path.open("wb") as log, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, cwd=out_dir) as process:
        assert process.stdout is not None
        output = process.stdout.read()
        # os.wait4, unlike Popen.wait, returns the resource usage of this one child.
        _pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"the {stage} stage failed with exit code {process.returncode}. See its log {log_path}")
    return json.loads(output), usage.ru_maxrss


def measure_stages(out_dir: Path, lines: int, reads: dict[str, float]) -> list[StageResult]:
    """Run every stage in order in its own subprocess and compare its rate with the reads."""
    plain_rate = lines / reads["plain_read"]
    split_rate = lines / reads["split_read"]
    results = []
    for stage in STAGES:
        logger.info("running %s on %d lines", stage, lines)
        outcome, peak_kib = spawn_stage(stage, out_dir)
        rate = lines / outcome["seconds"]
        results.append(
            StageResult(
                stage=stage,
                seconds=outcome["seconds"],
                lines_per_s=rate,
                ratio_to_plain_read=rate / plain_rate,
                ratio_to_split_read=rate / split_rate,
                peak_rss_mib=peak_kib / KIB_PER_MIB,
                rss_after_imports_mib=outcome["rss_after_imports_kib"] / KIB_PER_MIB,
            )
        )
        logger.info("%s: %.1f s, %.0f lines/s, peak RSS %.0f MiB", stage, outcome["seconds"], rate, peak_kib / KIB_PER_MIB)
    return results


def read_proc_field(path: Path, name: str) -> str:
    """Return the value of the first `name : value` line of a /proc file, or "unknown"."""
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return "unknown"


def mem_total_gib() -> float | None:
    """Return MemTotal of /proc/meminfo in GiB, or None when it cannot be read."""
    value = read_proc_field(Path("/proc/meminfo"), "MemTotal")
    number, _, unit = value.partition(" ")
    if unit != "kB" or not number.isdigit():
        return None
    return round(int(number) / KIB_PER_MIB / KIB_PER_MIB, 1)


def machine_facts() -> dict[str, Any]:
    """Return the CPU count, CPU model, total memory, OS and Python version of this machine."""
    from importlib.metadata import version

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": read_proc_field(Path("/proc/cpuinfo"), "model name"),
        "mem_total_gib": mem_total_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {name: version(name) for name in ("pandas", "pyarrow", "numpy")},
    }


def markdown_report(report: dict[str, Any]) -> str:
    """Format the benchmark report as Markdown: the machine, the command and one table."""
    machine = report["machine"]
    replay = report["replay"]
    lines = [
        f"Command: `{report['command']}`",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['mem_total_gib']} GiB memory, "
        f"Python {machine['python']}, {machine['platform']}.",
        "",
        f"Input: {replay['lines']:,} lines, {replay['rounds']} replay rounds of {replay['source_lines']:,} source lines, "
        f"{replay['fresh_addresses']:,} fresh client addresses, {replay['days_per_round']} days per round.",
        "",
        f"Load average (1 min): {report['load_average_1m']['start']:.1f} at the start, "
        f"{report['load_average_1m']['end']:.1f} at the end.",
        "",
        "| step | seconds | lines/s | ratio to plain read | ratio to split read | peak RSS (MiB) | RSS after imports (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, seconds in report["reads"].items():
        rate = replay["lines"] / seconds
        plain = replay["lines"] / report["reads"]["plain_read"]
        split = replay["lines"] / report["reads"]["split_read"]
        lines.append(f"| {name.replace('_', ' ')} | {seconds:.2f} | {rate:,.0f} | {rate / plain:.3f} | {rate / split:.3f} | – | – |")
    for stage in report["stages"]:
        lines.append(
            f"| {stage['stage']} | {stage['seconds']:.2f} | {stage['lines_per_s']:,.0f} | "
            f"{stage['ratio_to_plain_read']:.4f} | {stage['ratio_to_split_read']:.4f} | "
            f"{stage['peak_rss_mib']:,.0f} | {stage['rss_after_imports_mib']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def run_benchmark(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Build the replayed log, time the reads and the stages, and write the JSON and Markdown.

    `command` is the command line recorded in the report.
    """
    out_dir = args.out_dir.resolve()
    paths = stage_paths(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    load_at_start = os.getloadavg()[0]
    # Only the replayed log: no simulator logs mixed in, whatever conf/data sets.
    write_params(compose_config(["++data.mix_simulated=false"]), paths["params"])

    files = find_source_files(args.source_dir, out_dir, args.sim_scale)
    replay = build_replay(files, paths["log_dir"] / "replay.log", args.lines, args.days_per_round)
    logger.info("wrote %d lines in %d rounds to %s", replay.lines, replay.rounds, replay.path)

    reads = time_plain_reads(Path(replay.path), args.read_repeats)
    stages = measure_stages(out_dir, replay.lines, reads)
    report = {
        "command": command,
        "machine": machine_facts(),
        "memory_method": "peak resident set size of each stage subprocess, ru_maxrss from os.wait4",
        "replay": asdict(replay),
        # Other processes on the machine slow every step, so the report keeps the load.
        "load_average_1m": {"start": load_at_start, "end": os.getloadavg()[0]},
        "reads": reads,
        "read_repeats": args.read_repeats,
        "stages": [asdict(stage) for stage in stages],
        "collect_totals": json.loads(paths["collect_report"].read_text(encoding="utf-8"))["totals"],
    }

    (out_dir / "pipeline.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown_report(report)
    (out_dir / "pipeline.md").write_text(table, encoding="utf-8")
    sys.stdout.write(table)
    return report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=DEFAULT_LINES, help="Lines of the replayed log (default %(default)s).")
    parser.add_argument("--out-dir", type=Path, required=True, help="Folder for the replayed log, stage outputs and results.")
    parser.add_argument(
        "--source-dir", type=Path, default=DEFAULT_SOURCE_DIR,
        help=f"Folder of {SOURCE_GLOB} access logs to replay. Without such files, a simulated log is replayed (default %(default)s).",
    )
    parser.add_argument("--sim-scale", type=float, default=DEFAULT_SIM_SCALE, help="Simulator scale of the fallback log.")
    parser.add_argument(
        "--days-per-round", type=int, default=None,
        help="Days that each replay round shifts the timestamps by (default: the maximum number of days one source file covers).",
    )
    parser.add_argument("--read-repeats", type=int, default=DEFAULT_READ_REPEATS, help="Repeats of each plain read. The report uses the median.")
    parser.add_argument("--run-stage", choices=STAGES, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark, or one stage when called as a stage subprocess."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(arguments)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.run_stage:
        outcome = run_stage(args.run_stage, args.out_dir.resolve())
        sys.stdout.write(json.dumps(outcome) + "\n")
        return
    if args.read_repeats < 1:
        raise SystemExit(f"invalid --read-repeats {args.read_repeats}: it must be at least 1")
    script = sys.argv[0] if argv is None else __file__
    run_benchmark(args, shlex.join([sys.executable, script, *arguments]))


if __name__ == "__main__":
    main()
