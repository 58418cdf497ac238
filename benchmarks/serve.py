"""Benchmark the scoring service against `mlflow models serve` on the same registered model.

Both servers run on 127.0.0.1 and serve `models:/<mlflow.registered_model>@<champion>` from
the configured registry (MLFLOW_TRACKING_URI, else mlflow.tracking_uri). For each server,
in this order and one after the other, the benchmark runs:

1. a warm-up of `--warmup-s` seconds at 50 requests per second (not measured);
2. a fixed-rate phase: `--rate` requests per second for `--duration` seconds, on a fixed
   schedule over `--max-in-flight` keep-alive connections. A request's latency runs from
   its scheduled send time to the end of its response, so waiting for a free connection,
   or for the client's own event loop, counts against the server (no coordinated
   omission). The client's send lag (scheduled time to write) is reported on its own.
   Requests whose turn comes after `--duration` are not sent and count as
   `not_sent_in_time` errors;
3. a saturation phase: `--concurrency` connections send back to back for `--duration` seconds.

The load client is benchmarks/loadgen.py, a lean HTTP/1.1 client on uvloop, because it
shares the machine's CPUs with the server it measures.

Each phase stops after `--duration` seconds or `--max-requests` requests, whichever comes
first, and waits at most `--timeout-s` for the last responses.

The scoring service gets one click per request (POST /v1/score) from a log (default: the
simulated log under paths.sim_dir) replayed round after round. Every round gives each client
a fresh address from 198.18.0.0/15 (RFC 2544 benchmarking) and shifts the times by whole
days, so rounds add new sessions. `mlflow models serve` gets, per request, the feature row
that the batch pipeline computes for the same click, as one-row `dataframe_split` JSON.

The server's CPU time (all processes of its process group, from /proc) is read around each
phase, because the load client runs on the same machine and can be the bottleneck.

Lost records: after its phases the scoring service is flushed and stopped with SIGTERM,
and the rows in its click store (a SQLite file in `--out-dir`) are compared with the
requests for which it returned 200. `mlflow models serve` records nothing.

Results go to `--out-dir` as JSON and Markdown, with the machine facts and the command.

    python benchmarks/serve.py --duration 60 --rate 500 --concurrency 8
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import math
import os
import platform
import secrets
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

import httpx
import loadgen
import numpy as np
from loadgen import LoadClient
from omegaconf import DictConfig

from src.config import PARAMS_FILE, REPO_ROOT, compose_config, load_params, write_params
from src.data.log_parser import LineError, parse_line
from src.features.featurize import featurize_events
from src.features.session_features import FeatureSettings
from src.serve.batch_score import events_from_logs
from src.serve.champion import champion_version, load_champion
from src.train.tracking import tracking_uri

logger = logging.getLogger("benchmarks.serve")

LOOPBACK = "127.0.0.1"
REPLAY_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
SECONDS_PER_DAY = 86_400
WARMUP_RATE = 50
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 120.0
PERCENTILES = (50, 90, 99)
MS_PER_S = 1000.0


@dataclass
class PhaseResult:
    """Counts and latencies of one load phase against one server."""

    server: str
    phase: str
    target: str
    seconds: float
    sent: int
    ok: int
    errors: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    # 1-minute load average before and after the phase; other processes on the machine raise it.
    load_average: tuple[float, float] = (math.nan, math.nan)
    # CPU time of the server's process group during the phase, per second of the phase.
    server_cpu_cores: float = math.nan

    @property
    def throughput(self) -> float:
        """Successful responses per second."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Replay:
    """Request bodies of the replayed log: click events for the service, feature rows for MLflow."""

    clicks: list[dict[str, Any]]
    feature_rows: list[bytes]
    round_shift_days: int
    first_shift_days: int
    client_index: dict[str, int]

    def click_body(self, i: int) -> bytes:
        """Return request i for the scoring service: line i mod n of round i div n."""
        round_no, line = divmod(i, len(self.clicks))
        click = dict(self.clicks[line])
        shift = timedelta(days=self.first_shift_days + round_no * self.round_shift_days)
        click["ts"] = (click["ts"] + shift).isoformat()
        address = round_no * len(self.client_index) + self.client_index[click["client_ip"]]
        click["client_ip"] = str(REPLAY_NETWORK[address % REPLAY_NETWORK.num_addresses])
        return json.dumps(click).encode()

    def feature_body(self, i: int) -> bytes:
        """Return request i for `mlflow models serve`: the feature row of the same click."""
        return self.feature_rows[i % len(self.feature_rows)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds per measured phase.")
    parser.add_argument("--rate", type=float, default=500.0, help="Requests per second of the fixed-rate phase.")
    parser.add_argument("--concurrency", type=int, default=8, help="Connections sending back to back in the saturation phase.")
    parser.add_argument("--max-in-flight", type=int, default=16, help="Keep-alive connections of the fixed-rate phase: the most requests in flight.")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="Maximum requests per phase.")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="Seconds of warm-up per server, not measured.")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="Timeout of one request in seconds.")
    parser.add_argument("--log", type=Path, default=None, help="Access log to replay; default <paths.sim_dir>/access.log.")
    parser.add_argument("--params", type=Path, default=REPO_ROOT / PARAMS_FILE, help="Params file; conf/ when missing.")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "reports" / "benchmarks" / "serve", help="Output folder.")
    parser.add_argument("--skip-mlflow", action="store_true", help="Benchmark the scoring service only.")
    return parser.parse_args(argv)


def load_config(params: Path) -> DictConfig:
    """Load the params file like `botclick serve` does; check that it has the serve settings."""
    cfg = load_params(params) if params.is_file() else compose_config()
    if "store" not in cfg.serve:
        raise SystemExit(f"{params} has no serve.store settings; run `botclick params` to recompose it from conf/")
    return cfg


def read_clicks(log: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """Parse the log into click events in time order, and their line numbers.

    Lines that do not parse, or that the API would reject (no method, a path without a
    leading "/", a status outside 100-599), are counted and skipped.
    """
    clicks, line_numbers, skipped = [], [], 0
    for line_no, line in enumerate(log.read_bytes().decode("utf-8", "backslashreplace").splitlines(), start=1):
        try:
            fields = parse_line(line)
        except LineError:
            skipped += 1
            continue
        status = fields["status"]
        if not fields["path"].startswith("/") or not fields["method"] or (status is not None and not 100 <= status <= 599):
            skipped += 1
            continue
        line_numbers.append(line_no)
        clicks.append(
            {
                "ts": fields["ts"], "client_ip": fields["client_ip"], "user_agent": fields["user_agent"],
                "method": fields["method"], "path": fields["path"], "referrer": fields["referrer"] or None,
                "protocol": fields["protocol"] or None, "status": fields["status"], "bytes": fields["bytes"],
            }
        )  # fmt: skip
    order = sorted(range(len(clicks)), key=lambda i: clicks[i]["ts"])
    logger.info("read %d clicks from %s (%d lines skipped, see read_clicks)", len(clicks), log, skipped)
    return [clicks[i] for i in order], [line_numbers[i] for i in order]


def feature_rows(log: Path, line_numbers: list[int], cfg: DictConfig, names: list[str], workdir: Path) -> list[bytes]:
    """Return the `dataframe_split` body of each given log line, from the batch pipeline's features."""
    events = events_from_logs([log], cfg, workdir)
    features = featurize_events(events, FeatureSettings.from_config(cfg.features))
    by_line = dict(zip(events["line_no"].tolist(), features[names].to_numpy(dtype=np.float64), strict=True))
    rows = []
    for line_no in line_numbers:
        data = [None if math.isnan(v) else float(v) for v in by_line[line_no]]
        rows.append(json.dumps({"dataframe_split": {"columns": names, "data": [data]}}).encode())
    return rows


def build_replay(
    clicks: list[dict[str, Any]], rows: list[bytes], gap_s: float, margin_s: float, max_total_requests: int
) -> Replay:
    """Plan the rounds: whole days apart, the last one ending `margin_s` before now."""
    first, last = clicks[0]["ts"], clicks[-1]["ts"]
    round_days = math.ceil(((last - first).total_seconds() + gap_s) / SECONDS_PER_DAY) + 1
    clients = {ip: i for i, ip in enumerate(dict.fromkeys(c["client_ip"] for c in clicks))}
    rounds_needed = max_total_requests // len(clicks) + 1
    if rounds_needed * len(clients) > REPLAY_NETWORK.num_addresses:
        logger.warning("more replayed clients than addresses in %s; later rounds reuse addresses", REPLAY_NETWORK)
    latest_end = datetime.now(UTC) - timedelta(seconds=margin_s)
    first_shift = math.floor((latest_end - last).total_seconds() / SECONDS_PER_DAY) - rounds_needed * round_days
    return Replay(clicks, rows, round_days, first_shift, clients)


class Server:
    """A server subprocess in its own process group, with its log in the output folder."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path, ready_url: str) -> None:
        self.name, self.command, self.env, self.log, self.ready_url = name, command, env, log, ready_url
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process and wait until `ready_url` returns 200."""
        with self.log.open("wb") as handle:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.process.returncode}; see {self.log}")
            try:
                if httpx.get(self.ready_url, timeout=2.0).status_code == 200:
                    logger.info("%s is ready: %s", self.name, shlex.join(self.command))
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise SystemExit(f"{self.name} was not ready within {START_TIMEOUT_S} s; see {self.log}")

    def cpu_seconds(self) -> float:
        """Return the user plus system CPU seconds of every live process in the server's process group."""
        if self.process is None:
            return 0.0
        total_ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # After the command name: state, ppid, pgrp, ..., utime (field 14) and stime (15).
            if int(fields[2]) == self.process.pid:
                total_ticks += int(fields[11]) + int(fields[12])
        return total_ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int | None:
        """Send SIGTERM to the process group and wait; SIGKILL after STOP_TIMEOUT_S."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.error("%s did not stop within %s s; killing it", self.name, STOP_TIMEOUT_S)
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def child_env(cfg: DictConfig, extra: dict[str, str]) -> dict[str, str]:
    """Return the environment of a server: the venv's bin first on PATH (mlflow runs `uvicorn`), telemetry off."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        MLFLOW_TRACKING_URI=tracking_uri(cfg), MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    )  # fmt: skip
    env.update(extra)
    return env


def percentiles_ms(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    values = np.asarray(latencies) * MS_PER_S
    stats = {f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES}
    stats["max"] = float(values.max())
    return stats


def measure(
    server: Server, load: LoadClient, args: argparse.Namespace,
    server_side: Callable[[], dict[float, float]] | None = None,
) -> list[PhaseResult]:
    """Run the warm-up, the fixed-rate phase and the saturation phase against one server.

    `server_side` returns the server's latency histogram (bucket bound to count), when it has one.
    """
    load.connections = args.max_in_flight
    loadgen.run(loadgen.fixed_rate(load, WARMUP_RATE, args.warmup_s, args.max_requests))
    results = []
    for phase, target in (("fixed rate", f"{args.rate:g} req/s"), ("saturation", f"{args.concurrency} connections")):
        load.reset()
        before = server_side() if server_side else {}
        load_before, cpu_before = os.getloadavg()[0], server.cpu_seconds()
        if phase == "fixed rate":
            load.connections = args.max_in_flight
            seconds = loadgen.run(loadgen.fixed_rate(load, args.rate, args.duration, args.max_requests))
        else:
            load.connections = args.concurrency
            seconds = loadgen.run(loadgen.saturation(load, args.duration, args.max_requests))
        stats = load.stats
        result = PhaseResult(server.name, phase, target, seconds, stats.sent, len(stats.latencies), dict(stats.errors),
                             percentiles_ms(stats.latencies), (load_before, os.getloadavg()[0]),
                             (server.cpu_seconds() - cpu_before) / seconds)
        result.latency_ms.update({f"send_lag_{k}": v for k, v in percentiles_ms(stats.send_lags).items()})
        if server_side:
            result.latency_ms.update(bucket_percentiles(before, server_side()))
        logger.info("%s %s: %.0f ok/s, %s, errors %s, server CPU %.2f cores", server.name, phase, result.throughput,
                    result.latency_ms, result.errors, result.server_cpu_cores)
        results.append(result)
    return results


def latency_histogram(url: str) -> dict[float, float]:
    """Return the cumulative /v1/score latency histogram of the scoring service's /metrics."""
    buckets = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("botclick_request_latency_seconds_bucket{") and 'route="/v1/score"' in line:
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[math.inf if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def bucket_percentiles(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """Return the server-side p50 and p99 as histogram bucket bounds (an upper estimate), in ms."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = counts.get(math.inf, 0.0)
    if total <= 0:
        return {}
    estimates = {}
    for p in (50, 99):
        bound = next(b for b, c in counts.items() if c >= total * p / 100)
        estimates[f"server_p{p}_bucket"] = bound * MS_PER_S
    return estimates


def count_stored(store: Path) -> int:
    with sqlite3.connect(store) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM clicks").fetchone()[0])


def run_service(cfg: DictConfig, args: argparse.Namespace, replay: Replay, params: Path) -> tuple[list[PhaseResult], dict[str, Any]]:
    """Benchmark the scoring service and count its lost records."""
    out_dir: Path = args.out_dir
    store = out_dir / "clicks.db"
    for stale in out_dir.glob("clicks.db*"):
        stale.unlink()
    port, token = free_port(), secrets.token_hex(16)
    url = f"http://{LOOPBACK}:{port}"
    command = [
        sys.executable, "-m", "src.serve", "serve", "--params", str(params), "--port", str(port),
        f"serve.store.url=sqlite:///{store}", f"serve.store.spill_path={out_dir / 'spill.jsonl'}",
    ]  # fmt: skip
    server = Server("scoring service", command, child_env(cfg, {"BOTCLICK_ADMIN_TOKEN": token}), out_dir / "service.log", f"{url}/readyz")
    server.start()
    load = LoadClient(LOOPBACK, port, "/v1/score", replay.click_body, args.timeout_s, args.max_in_flight)
    try:
        results = measure(server, load, args, lambda: latency_histogram(url))
        httpx.post(f"{url}/admin/flush", headers={"Authorization": f"Bearer {token}"}, timeout=STOP_TIMEOUT_S)
    finally:
        exit_code = server.stop()

    stored = count_stored(store)
    records = {
        "answered": load.total_ok, "stored": stored, "lost": max(0, load.total_ok - stored),
        "stored_without_answer": max(0, stored - load.total_ok), "exit_code": exit_code, "command": shlex.join(command),
    }  # fmt: skip
    logger.info("scoring service records: %s", records)
    return results, records


def run_mlflow(cfg: DictConfig, args: argparse.Namespace, replay: Replay) -> tuple[list[PhaseResult], str]:
    """Benchmark `mlflow models serve --env-manager local` on the champion."""
    port = free_port()
    model_uri = f"models:/{cfg.mlflow.registered_model}@{cfg.mlflow.champion_alias}"
    command = [
        str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", model_uri,
        "--env-manager", "local", "-h", LOOPBACK, "-p", str(port),
    ]  # fmt: skip
    server = Server("mlflow models serve", command, child_env(cfg, {}), args.out_dir / "mlflow-serve.log", f"http://{LOOPBACK}:{port}/ping")
    server.start()
    load = LoadClient(LOOPBACK, port, "/invocations", replay.feature_body, args.timeout_s, args.max_in_flight)
    try:
        return measure(server, load, args), shlex.join(command)
    finally:
        server.stop()


def machine_facts() -> dict[str, Any]:
    """Return the CPU, memory, software versions and the load average (other processes raise it)."""
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    memory_kib = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")), 0)
    packages = {name: version(name) for name in ("mlflow", "xgboost-cpu", "fastapi", "uvicorn", "uvloop")}
    return {
        "nproc": len(os.sched_getaffinity(0)), "cpu_model": cpu_model, "mem_total_gib": round(memory_kib / 2**20, 1),
        "python": platform.python_version(), "platform": platform.platform(), "packages": packages,
        "load_average_1m": os.getloadavg()[0],
    }  # fmt: skip


def markdown(results: list[PhaseResult], records: dict[str, Any], facts: dict[str, Any], commands: dict[str, str]) -> str:
    """Render the results as the Markdown table of docs/benchmarks.md."""
    lines = [
        "| server | phase | target | ok/s | p50 ms | p99 ms | max ms | client send lag p99 ms | server p99 ms (bucket) "
        "| server CPU (cores) | sent | errors | load avg |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        lat = r.latency_ms
        server_p99 = f"≤ {lat['server_p99_bucket']:g}" if "server_p99_bucket" in lat else "n/a"
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(r.errors.items())) or "0"
        lines.append(
            f"| {r.server} | {r.phase} | {r.target} | {r.throughput:.0f} | {lat.get('p50', math.nan):.2f} | "
            f"{lat.get('p99', math.nan):.2f} | {lat.get('max', math.nan):.1f} | {lat.get('send_lag_p99', math.nan):.2f} "
            f"| {server_p99} | {r.server_cpu_cores:.2f} "
            f"| {r.sent} | {errors} | "
            f"{r.load_average[0]:.1f} to {r.load_average[1]:.1f} |"
        )
    lines += ["", _ratio_line(results), "",
              f"Lost records (scoring service): {records['lost']} of {records['answered']} answered clicks; "
              f"{records['stored']} rows stored, {records['stored_without_answer']} stored without a 200 at the client. "
              "`mlflow models serve` stores nothing.", "",
              f"Machine: {facts['nproc']} CPUs ({facts['cpu_model']}), {facts['mem_total_gib']} GiB, Python {facts['python']}, "
              f"load average {facts['load_average_1m']:.1f} at the start and {facts['load_average_end']:.1f} at the end; "
              f"packages {facts['packages']}.", ""]  # fmt: skip
    lines += [f"- {name}: `{command}`" for name, command in commands.items()]
    return "\n".join(lines) + "\n"


def _ratio_line(results: list[PhaseResult]) -> str:
    by_key = {(r.server, r.phase): r for r in results}
    ours, theirs = by_key.get(("scoring service", "saturation")), by_key.get(("mlflow models serve", "saturation"))
    if ours is None or theirs is None or theirs.throughput == 0:
        return "Throughput ratio at saturation: n/a (mlflow models serve skipped or failed)."
    ours_per_cpu = ours.throughput / ours.server_cpu_cores
    theirs_per_cpu = theirs.throughput / theirs.server_cpu_cores
    return (
        f"Throughput ratio at saturation, scoring service / mlflow models serve: {ours.throughput / theirs.throughput:.1f}x. "
        f"Per server CPU-second: {ours_per_cpu:.0f} / {theirs_per_cpu:.0f} requests, {ours_per_cpu / theirs_per_cpu:.1f}x."
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx, used for readiness polls and /metrics, logs every request at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.params)
    params = write_params(cfg, args.out_dir / "params.yaml")
    champion_version(cfg)
    facts = machine_facts()

    log = args.log or Path(str(cfg.paths.sim_dir)) / "access.log"
    model = load_champion(cfg)
    clicks, line_numbers = read_clicks(log)
    rows = feature_rows(log, line_numbers, cfg, list(model.meta.feature_names), args.out_dir / "features")
    skew = cfg.serve.max_future_skew_s or 0
    total = int(WARMUP_RATE * args.warmup_s) + min(args.max_requests, int(args.rate * args.duration)) + args.max_requests
    replay = build_replay(clicks, rows, float(cfg.data.preprocess.inactivity_gap_s), float(skew) + SECONDS_PER_DAY, total)

    results, records = run_service(cfg, args, replay, params)
    commands = {"benchmark": shlex.join([sys.executable, *sys.argv]), "scoring service": records.pop("command")}
    if not args.skip_mlflow:
        mlflow_results, commands["mlflow models serve"] = run_mlflow(cfg, args, replay)
        results += mlflow_results
    facts["load_average_end"] = os.getloadavg()[0]

    report = {"results": [asdict(r) | {"throughput": r.throughput} for r in results], "records": records,
              "machine": facts, "commands": commands, "log": str(log), "model_version": model.version}  # fmt: skip
    (args.out_dir / "serve.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(results, records, facts, commands)
    (args.out_dir / "serve.md").write_text(table, encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
