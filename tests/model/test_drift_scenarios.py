"""Drift scenarios built with the simulator, checked end to end with the real pipeline.

The champion is trained on simulated traffic without headless browsers. Each scenario
simulates a later current window: the same families (control), a large new headless
browser family, or human browsers updated to newer versions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf
from typer.testing import CliRunner

from src.cli import app
from src.config import compose_config
from src.data.simulate import FAMILIES, simulate
from src.monitor.job import DriftCheckRequest, run_drift_check
from src.monitor.reference import load_reference
from src.monitor.registry_ops import PREVIOUS_CHAMPION_TAG, current_champion, registry_client, rollback
from src.monitor.settings import ExitCode
from src.serve.champion import load_champion
from tests.helpers import run_stages, workdir_config

pytestmark = pytest.mark.slow

SCALE = 0.4
REFERENCE_SEED, CONTROL_SEED, NEW_FAMILY_SEED, BROWSER_SEED = 11, 13, 12, 14
NEW_FAMILY = "headless_browser"
# Clients of the new family before scaling: ten times the default, about a fifth of all sessions.
NEW_FAMILY_COUNT = 400
LATER_START = "2026-11-20T00:00:00+00:00"
FAST = ["data.mix_simulated=false", "evaluate.holdout_scale=0.1"]

# Human browser pools one year on: every major version is new, the string shapes are the same.
UPDATED_DESKTOP = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/154.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/153.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/154.0.0.0 Safari/537.36 Edg/154.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:157.0) Gecko/20100101 Firefox/157.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:156.0) Gecko/20100101 Firefox/156.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/27.0 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/27.1 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/154.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/153.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:157.0) Gecko/20100101 Firefox/157.0",
]
UPDATED_MOBILE = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 19_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/27.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 19_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/27.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 19_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/27.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/154.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/153.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/30.0 Chrome/142.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Android 16; Mobile; rv:157.0) Gecko/157.0 Firefox/157.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 19_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/154.0.7700.40 Mobile/15E148 Safari/604.1",
]


def monitor_overrides(folder: Path) -> list[str]:
    """Monitor settings with every output under `folder` and the in-process retrain runner."""
    return [
        f"monitor.reports_dir={folder / 'reports/drift'}",
        f"monitor.daily_dir={folder / 'reports/daily'}",
        f"monitor.lock_file={folder / 'monitor/drift.lock'}",
        f"monitor.retrain.workdir={folder / 'retrain'}",
        "monitor.retrain.runner=inprocess",
    ]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory):
    """A champion trained on simulated traffic without the new family, in a temp registry."""
    workdir = tmp_path_factory.mktemp("drift_base")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    logs = workdir / "reference_logs"
    cfg = workdir_config(workdir, logs, [f"paths.ground_truth={logs / 'ground_truth.csv'}", *FAST])
    simulate(cfg, logs, seed=REFERENCE_SEED, scale=SCALE, families=[f for f in FAMILIES if f != NEW_FAMILY])
    run_stages(cfg)
    yield workdir, cfg
    monkeypatch.undo()


@pytest.fixture()
def job_cfg(base, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DictConfig:
    """The base config with a private copy of the registry and monitor outputs under tmp_path."""
    workdir, cfg = base
    shutil.copy(workdir / "mlflow.db", tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(monitor_overrides(tmp_path)))


def simulate_current(out: Path, seed: int, scale: float = SCALE, families: list[str] | None = None, **changes: object) -> Path:
    """Simulate a current window that starts after the reference; `changes` replace simulate.* keys."""
    sim_cfg = compose_config([f"simulate.start={LATER_START}"])
    for key, value in changes.items():
        OmegaConf.update(sim_cfg, f"simulate.{key}", value, merge=False)
    simulate(sim_cfg, out, seed=seed, scale=scale, families=families)
    return out


def registry_versions(cfg: DictConfig) -> list[str]:
    client = MlflowClient()
    return sorted(str(v.version) for v in client.search_model_versions(f"name='{cfg.mlflow.registered_model}'"))


def test_control_reports_no_drift(job_cfg: DictConfig, tmp_path: Path):
    logs = simulate_current(tmp_path / "control", CONTROL_SEED, families=[f for f in FAMILIES if f != NEW_FAMILY])
    request = DriftCheckRequest(logs=[logs / "access.log"], ground_truth=[logs / "ground_truth.csv"], retrain=True)
    outcome = run_drift_check(request, job_cfg)

    assert outcome.exit_code == ExitCode.OK
    assert outcome.summary["status"] == "no_drift"
    assert outcome.summary["decision"]["action"] == "none"
    assert current_champion(registry_client(job_cfg), job_cfg) == "1"
    assert registry_versions(job_cfg) == ["1"]
    for name in ("drift_report.html", "summary.json", "summary.md"):
        assert (outcome.report_dir / name).is_file()
    daily = outcome.report_dir / outcome.summary["files"]["daily_report"]
    assert daily.is_file()
    assert "no_drift" in daily.read_text()


def test_new_family_retrains_and_promotes(job_cfg: DictConfig, tmp_path: Path):
    logs = simulate_current(tmp_path / "new_family", NEW_FAMILY_SEED, **{f"families.{NEW_FAMILY}.count": NEW_FAMILY_COUNT})
    request = DriftCheckRequest(logs=[logs / "access.log"], ground_truth=[logs / "ground_truth.csv"], retrain=True)
    outcome = run_drift_check(request, job_cfg)
    summary = json.loads((outcome.report_dir / "summary.json").read_text())

    assert outcome.exit_code == ExitCode.DRIFT
    assert summary["status"] == "drift"
    assert summary["feature_drift"]["drifted"]
    assert summary["decision"]["action"] == "promoted"
    gate = summary["decision"]["gate"]
    assert gate["challenger"]["pr_auc"] > gate["champion"]["pr_auc"] + job_cfg.monitor.gate.min_improvement
    assert all(check["passed"] for check in gate["checks"])

    client = registry_client(job_cfg)
    new_version = summary["decision"]["retrain"]["version"]
    assert current_champion(client, job_cfg) == new_version != "1"
    tags = client.get_model_version(str(job_cfg.mlflow.registered_model), new_version).tags
    assert tags[PREVIOUS_CHAMPION_TAG] == "1"
    assert tags["gate_decision"] == "promoted"
    assert (outcome.report_dir / "holdout.parquet").is_file()
    assert "promoted" in (outcome.report_dir / "summary.md").read_text()

    run_names = {run.info.run_name for run in client.search_runs([client.get_experiment_by_name(str(job_cfg.mlflow.experiment)).experiment_id])}
    assert {"drift-check", "promotion-gate"} <= run_names

    reference = load_reference(load_champion(job_cfg), job_cfg)
    assert reference.source == "champion_run"
    assert (reference.sessions["user_agent_family"] != "").all()
    assert client.get_model_version_by_alias(str(job_cfg.mlflow.registered_model), "champion").aliases == ["champion"]

    result = rollback(job_cfg, reason="test: restore the previous champion")
    assert (result.from_version, result.to_version) == (new_version, "1")
    assert current_champion(client, job_cfg) == "1"


def test_browser_update_triggers_drift(job_cfg: DictConfig, tmp_path: Path):
    logs = simulate_current(
        tmp_path / "browsers", BROWSER_SEED, families=[f for f in FAMILIES if f != NEW_FAMILY],
        **{"user_agents.desktop": UPDATED_DESKTOP, "user_agents.mobile": UPDATED_MOBILE},
    )
    outcome = run_drift_check(DriftCheckRequest(logs=[logs / "access.log"]), job_cfg)

    assert outcome.exit_code == ExitCode.DRIFT
    assert outcome.summary["trigger_columns"]["drifted"] == ["user_agent_family"]
    assert outcome.summary["decision"]["action"] == "retrain_not_requested"
    assert current_champion(registry_client(job_cfg), job_cfg) == "1"
    assert registry_versions(job_cfg) == ["1"]


def test_cli_small_window_not_enough_data(base, job_cfg: DictConfig, tmp_path: Path):
    workdir, _ = base
    logs = simulate_current(tmp_path / "tiny", CONTROL_SEED, scale=0.02)
    report_dir = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        ["drift-check", "--logs", str(logs / "*.log"), "--retrain", "--report-dir", str(report_dir), "--params", str(workdir / "params.yaml"),
         *[arg for item in monitor_overrides(tmp_path) for arg in ("--set", item)]],
    )

    assert result.exit_code == ExitCode.NOT_ENOUGH_DATA, result.output
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["status"] == "not_enough_data"
    assert summary["feature_drift"] is None
    assert "Not enough data" in (report_dir / "summary.md").read_text()
    assert not (report_dir / "drift_report.html").exists()
    assert registry_versions(job_cfg) == ["1"]
