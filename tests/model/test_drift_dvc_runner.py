"""`botclick drift-check --retrain` with the default dvc runner, in a temp git + DVC repo.

The repo's own pipeline (`dvc repro`) trains the champion on simulated traffic without
headless browsers. The drift job then checks a window with many of them, runs
`dvc exp run` on the staged input, and promotes the challenger through the gate.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from src.config import compose_config, write_params
from src.data.simulate import simulate
from src.monitor.settings import ExitCode
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

TIMEOUT_S = 900
NEW_FAMILY = "headless_browser"
# Lines replaced in the temp repo's conf/: a smaller simulation without the new family,
# and a smaller held-out simulation in the evaluate stage.
CONF_EDITS = {
    "conf/simulate/default.yaml": [("scale: 1.0", "scale: 0.3"), ("days: 2", "days: 1"), ("    count: 40                       # clients\n    user_agents: {headless: 0.4, desktop: 0.6}", "    count: 0                        # clients\n    user_agents: {headless: 0.4, desktop: 0.6}")],
    "conf/evaluate/default.yaml": [("holdout_scale: 1.0", "holdout_scale: 0.1")],
    "conf/data/default.yaml": [("mix_simulated: true", "mix_simulated: false")],
}
GITIGNORE = "/mlflow.db\n/mlartifacts/\n/logs/\n/models/\n/data/raw/\n/data/interim/\n/data/features/\n/data/retrain/\n/data/monitor/\n/reports/\n"


def run(cmd: list[str], cwd: Path, env: dict[str, str], ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode in ok_codes, f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
    return result


def edit(path: Path, replacements: list[tuple[str, str]]) -> None:
    text = path.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, f"{old!r} not in {path}"
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def drift_repo(tmp_path_factory: pytest.TempPathFactory):
    """A temp repo whose `dvc repro` registered the first champion, and the new traffic."""
    repo = tmp_path_factory.mktemp("dvc_drift_repo")
    for name in ("dvc.yaml", "MLproject"):
        shutil.copy(REPO_ROOT / name, repo / name)
    shutil.copytree(REPO_ROOT / "conf", repo / "conf")
    shutil.copytree(REPO_ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "data/labels").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "data/labels/reviews.csv", repo / "data/labels/reviews.csv")
    (repo / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    for name, replacements in CONF_EDITS.items():
        edit(repo / name, replacements)

    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@localhost",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@localhost",
        "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
    }
    run(["git", "init", "-q"], repo, env)
    run(["dvc", "init", "-q"], repo, env)
    run(["dvc", "config", "hydra.enabled", "True"], repo, env)
    write_params(compose_config([], conf_dir=repo / "conf"), repo / "params.yaml")
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "init"], repo, env)
    run(["dvc", "repro"], repo, env)

    current = tmp_path_factory.mktemp("dvc_drift_current")
    sim_cfg = compose_config(["simulate.start=2026-11-20T00:00:00+00:00", "simulate.days=1", f"simulate.families.{NEW_FAMILY}.count=400"])
    simulate(sim_cfg, current, seed=12, scale=0.3)
    return repo, env, current


def test_dvc_runner_retrains_and_promotes(drift_repo):
    repo, env, current = drift_repo
    result = run(
        ["botclick", "drift-check", "--retrain", "--logs", str(current / "access.log"), "--ground-truth", str(current / "ground_truth.csv"),
         "--report-dir", "reports/drift/test"],
        repo, env, ok_codes=(0, int(ExitCode.DRIFT)),
    )
    summary = json.loads((repo / "reports/drift/test/summary.json").read_text())
    assert result.returncode == ExitCode.DRIFT, summary["reason"]
    assert summary["decision"]["action"] == "promoted", summary["decision"]["detail"]
    assert summary["decision"]["retrain"]["runner"] == "dvc"
    assert (repo / "reports/drift/test/retrain.log").is_file()

    experiments = run(["dvc", "exp", "list", "--name-only"], repo, env).stdout
    assert "drift-" in experiments
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert Path(params["paths"]["log_dir"]).name == "input"
    assert sorted(link.name.split("-", 1)[1] for link in (repo / "data/retrain/input").iterdir()) == ["access.log", "access.log"]

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("bot-click", "champion")
    assert str(champion.version) == summary["decision"]["retrain"]["version"]
    assert champion.aliases == ["champion"]
    assert champion.tags["previous_champion"] == "1"
