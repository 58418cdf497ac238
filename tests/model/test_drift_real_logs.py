"""The drift check on the two real logs: 2015 as reference, 2019 as current."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from src.cli import app
from src.data.simulate import simulate
from src.monitor.settings import ExitCode
from tests.helpers import run_stages, workdir_config

pytestmark = [pytest.mark.slow, pytest.mark.real_logs]

REFERENCE_LOG = "semicomplete-2015-05.log"
CURRENT_LOG = "almhuette-2019-10.log"
IPV4 = re.compile(r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9.])")


@pytest.fixture(scope="module")
def real_check(real_logs_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Run `botclick drift-check` once with a champion trained on simulated traffic."""
    workdir = tmp_path_factory.mktemp("drift_real")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    logs = workdir / "logs"
    cfg = workdir_config(workdir, logs, [f"paths.ground_truth={logs / 'ground_truth.csv'}", "data.mix_simulated=false", "simulate.days=1", "evaluate.holdout_scale=0.1"])
    simulate(cfg, logs, scale=0.2)
    run_stages(cfg)

    report_dir = workdir / "reports/drift/real"
    settings = [f"monitor.daily_dir={workdir / 'reports/daily'}", f"monitor.lock_file={workdir / 'drift.lock'}"]
    result = CliRunner().invoke(
        app,
        ["drift-check", "--reference-logs", str(real_logs_dir / REFERENCE_LOG), "--logs", str(real_logs_dir / CURRENT_LOG),
         "--report-dir", str(report_dir), "--params", str(workdir / "params.yaml"), *[a for s in settings for a in ("--set", s)]],
    )
    yield workdir, report_dir, result
    monkeypatch.undo()


def test_real_logs_report_drift(real_check):
    _, report_dir, result = real_check
    assert result.exit_code == ExitCode.DRIFT, result.output
    for name in ("drift_report.html", "summary.json", "summary.md"):
        assert (report_dir / name).stat().st_size > 0
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["status"] == "drift"
    assert summary["windows"]["reference"]["start"].startswith("2015-05")
    assert summary["windows"]["current"]["end"].startswith("2019-10")


def test_real_logs_every_line_counted(real_check):
    _, report_dir, _ = real_check
    summary = json.loads((report_dir / "summary.json").read_text())
    for window in ("reference", "current"):
        lines = summary["windows"][window]["lines"]
        assert lines["lines"] == 10_000
        assert lines["parsed"] + lines["quarantined"] == lines["lines"]


def test_real_logs_markdown_names_top_features(real_check):
    _, report_dir, _ = real_check
    markdown = (report_dir / "summary.md").read_text()
    summary = json.loads((report_dir / "summary.json").read_text())
    assert "## Most drifted features" in markdown
    assert summary["features"][0]["column"] in markdown
    assert "daily_report" in summary["files"]


def test_real_logs_no_raw_ip_in_reports(real_check, real_logs_dir: Path):
    workdir, _, _ = real_check
    raw_ips = set()
    for log in (REFERENCE_LOG, CURRENT_LOG):
        raw_ips |= {line.split(" ", 1)[0] for line in (real_logs_dir / log).read_text(errors="replace").splitlines() if line}
    written = set()
    for path in (workdir / "reports").rglob("*"):
        if path.is_file() and path.suffix in {".html", ".json", ".md"}:
            written |= set(IPV4.findall(path.read_text(errors="replace")))
    assert raw_ips & written == set()
