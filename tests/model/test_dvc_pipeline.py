"""The real DVC pipeline in a temp git repo, on simulated traffic.

Checks that `dvc repro` runs every stage, that a second `dvc repro` does no work, and
that `dvc exp run -S` overrides a Hydra parameter.
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

from src.config import compose_config, write_params
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    repo = tmp_path_factory.mktemp("dvc_repo")
    for name in ("dvc.yaml", "MLproject"):
        shutil.copy(REPO_ROOT / name, repo / name)
    shutil.copytree(REPO_ROOT / "conf", repo / "conf")
    shutil.copytree(REPO_ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "data/labels").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "data/labels/reviews.csv", repo / "data/labels/reviews.csv")
    (repo / ".gitignore").write_text("/mlflow.db\n/mlartifacts/\n/logs/\n/models/\n", encoding="utf-8")

    # The repo's own conf/ with a smaller simulation, as a developer would edit it.
    overrides = repo / "conf/simulate/default.yaml"
    overrides.write_text(overrides.read_text(encoding="utf-8").replace("scale: 1.0", "scale: 0.5"), encoding="utf-8")

    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@localhost",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@localhost",
        "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    run(["git", "init", "-q"], repo, env)
    run(["dvc", "init", "-q"], repo, env)
    run(["dvc", "config", "hydra.enabled", "True"], repo, env)
    write_params(compose_config([], conf_dir=repo / "conf"), repo / "params.yaml")
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "init"], repo, env)
    return repo, env


def test_repro_runs_all_stages(dvc_repo):
    repo, env = dvc_repo
    output = run(["dvc", "repro"], repo, env).stdout
    for stage in ("simulate", "collect", "preprocess", "labels", "featurize", "train", "evaluate"):
        assert f"Running stage '{stage}'" in output
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert set(metrics) == {"model", "ua_list", "rate_rule", "families"}
    assert (repo / "dvc.lock").is_file()


def test_second_repro_does_no_work(dvc_repo):
    repo, env = dvc_repo
    output = run(["dvc", "repro"], repo, env).stdout
    assert "Running stage" not in output
    assert "up to date" in output


def test_exp_run_overrides_hydra_param(dvc_repo):
    repo, env = dvc_repo
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "first run"], repo, env)
    output = run(["dvc", "exp", "run", "-S", "model.max_depth=3"], repo, env).stdout
    assert "Running stage 'train'" in output
    assert "Running stage 'collect'" not in output
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["model"]["max_depth"] == 3
