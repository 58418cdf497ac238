"""Smoke run of benchmarks/serve.py: both servers, every phase, one second each.

It checks that the report is complete and consistent (no errors, no lost records), never
the timings, which belong to docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.conftest import TrainedRegistry
from tests.service.server import child_env

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 600
PHASES = ["fixed rate", "saturation"]


@pytest.fixture(scope="module")
def report(trained_registry: TrainedRegistry, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out_dir = tmp_path_factory.mktemp("serve_benchmark")
    command = [
        sys.executable, "benchmarks/serve.py", "--params", str(trained_registry.params), "--out-dir", str(out_dir),
        "--duration", "1", "--warmup-s", "0.5", "--rate", "50", "--concurrency", "2", "--max-in-flight", "4",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=child_env(trained_registry.tracking_uri), capture_output=True, text=True,
        timeout=RUN_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out_dir / "serve.md").read_text(encoding="utf-8").startswith("| server | phase |")
    return json.loads((out_dir / "serve.json").read_text(encoding="utf-8"))


def test_benchmark_runs_every_phase(report):
    phases = [(r["server"], r["phase"]) for r in report["results"]]
    assert phases == [("scoring service", p) for p in PHASES] + [("mlflow models serve", p) for p in PHASES]
    for result in report["results"]:
        assert result["errors"] == {}, result
        assert result["ok"] == result["sent"] > 0
        assert {"p50", "p99", "send_lag_p99"} <= set(result["latency_ms"])


def test_fixed_rate_sends_planned_count(report):
    for result in report["results"]:
        if result["phase"] == "fixed rate":
            assert result["sent"] == 50


def test_benchmark_loses_no_click(report):
    records = report["records"]
    assert records["lost"] == 0
    assert records["stored_without_answer"] == 0
    assert records["stored"] == records["answered"] > 0
    assert records["exit_code"] in (0, -15)
