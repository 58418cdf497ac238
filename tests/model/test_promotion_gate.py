"""The promotion gate, concurrent promotions and rollback, with real registered models.

The champion comes from the real pipeline. Challengers are real boosters logged and
registered with the training stage's own functions: a copy of the champion, one
trained on shuffled labels (deliberately worse), and one that flags every session.
Held-out sessions come from a simulation with a seed the pipeline never trained on.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf
from typer.testing import CliRunner

from src.cli import app
from src.data.simulate import simulate
from src.monitor.gate import run_gate
from src.monitor.lock import exclusive_lock
from src.monitor.registry_ops import (
    PREVIOUS_CHAMPION_TAG,
    NoPreviousChampionError,
    current_champion,
    force_promote,
    registry_client,
    rollback,
)
from src.monitor.settings import ExitCode
from src.serve.champion import load_version
from src.train.dataset import Dataset, load_dataset
from src.train.holdout import holdout_sessions
from src.train.model_io import ModelMeta, feature_matrix
from src.train.registry import PromotionDecision, register
from src.train.split import TRAIN
from src.train.train import booster_params, log_to_mlflow, operating_threshold
from tests.helpers import run_stages, workdir_config

pytestmark = pytest.mark.slow

SCALE = 0.3
SHUFFLED_ROUNDS = 30
WAIT_FOR_PROCESSES_S = 180


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory):
    """A pipeline champion, its dataset and held-out sessions from an unseen simulation seed."""
    workdir = tmp_path_factory.mktemp("gate_base")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    logs = workdir / "logs"
    cfg = workdir_config(workdir, logs, [f"paths.ground_truth={logs / 'ground_truth.csv'}", "data.mix_simulated=false", "simulate.days=1", "evaluate.holdout_scale=0.2"])
    simulate(cfg, logs, scale=SCALE)
    run_stages(cfg)
    data = load_dataset(Path(str(cfg.paths.features)), Path(str(cfg.paths.session_labels)), cfg)
    holdout = holdout_sessions(cfg, workdir / "holdout")
    yield workdir, cfg, data, holdout
    monkeypatch.undo()


@pytest.fixture()
def gate_cfg(base, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DictConfig:
    """The base config with a private copy of the registry and the lock under tmp_path."""
    workdir, cfg, _, _ = base
    shutil.copy(workdir / "mlflow.db", tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"monitor.lock_file={tmp_path / 'drift.lock'}", f"monitor.reports_dir={tmp_path / 'reports'}"]))


def register_booster(booster: xgb.Booster, threshold: float, data: Dataset, cfg: DictConfig, note: str) -> str:
    """Log a booster as the training stage does and register it as a challenger; return its version."""
    meta = ModelMeta(
        feature_names=data.feature_names, threshold=threshold, best_iteration=booster.num_boosted_rounds() - 1,
        git_commit="test", extra={"data_version": "test"},
    )
    meta = log_to_mlflow(booster, meta, data, cfg)
    return register(meta.model_uri, meta.run_id, PromotionDecision(False, note), cfg).version


def shuffled_label_booster(data: Dataset, cfg: DictConfig) -> xgb.Booster:
    """Train on the train split with the labels shuffled: a model that learned nothing."""
    rows = data.part(TRAIN)
    labels = np.random.default_rng(int(cfg.seed)).permutation(rows["label"].to_numpy())
    matrix = xgb.DMatrix(feature_matrix(rows, data.feature_names), label=labels, feature_names=data.feature_names)
    return xgb.train(booster_params(cfg.model, int(cfg.seed)), matrix, num_boost_round=SHUFFLED_ROUNDS)


def register_worse(data: Dataset, cfg: DictConfig) -> str:
    booster = shuffled_label_booster(data, cfg)
    return register_booster(booster, operating_threshold(booster, data, cfg), data, cfg, "test: trained on shuffled labels")


def register_champion_copy(data: Dataset, cfg: DictConfig, threshold: float | None = None) -> str:
    champion = load_version(cfg, "1")
    chosen = champion.meta.threshold if threshold is None else threshold
    return register_booster(champion.booster, chosen, data, cfg, "test: copy of the first champion")


def version_tags(cfg: DictConfig, version: str) -> dict[str, str]:
    return MlflowClient().get_model_version(str(cfg.mlflow.registered_model), version).tags


def test_worse_challenger_never_promoted(base, gate_cfg: DictConfig):
    _, _, data, holdout = base
    worse = register_worse(data, gate_cfg)
    decision = run_gate(gate_cfg, worse, holdout, "test holdout")

    assert not decision.promote
    assert current_champion(registry_client(gate_cfg), gate_cfg) == "1"
    failed = {check.name for check in decision.checks if not check.passed}
    assert "pr_auc_improvement" in failed
    assert decision.challenger["pr_auc"] < decision.champion["pr_auc"]
    assert version_tags(gate_cfg, worse)["gate_decision"] == "rejected"

    run = MlflowClient().get_run(decision.run_id)
    assert run.info.run_name == "promotion-gate"
    assert run.data.tags["gate_decision"] == "rejected"
    assert run.data.metrics["champion_pr_auc"] > run.data.metrics["challenger_pr_auc"]


def test_equal_challenger_fails_margin(base, gate_cfg: DictConfig):
    _, _, data, holdout = base
    copy = register_champion_copy(data, gate_cfg)
    decision = run_gate(gate_cfg, copy, holdout, "test holdout")

    assert not decision.promote
    improvement = next(check for check in decision.checks if check.name == "pr_auc_improvement")
    assert improvement.value == pytest.approx(0.0)
    assert current_champion(registry_client(gate_cfg), gate_cfg) == "1"


def test_better_challenger_promoted_and_rolled_back(base, gate_cfg: DictConfig):
    _, _, data, holdout = base
    worse = register_worse(data, gate_cfg)
    force_promote(gate_cfg, worse, "test: start from a weak champion")
    better = register_champion_copy(data, gate_cfg)

    decision = run_gate(gate_cfg, better, holdout, "test holdout")
    assert decision.promote, decision.reason
    assert current_champion(registry_client(gate_cfg), gate_cfg) == better
    assert version_tags(gate_cfg, better)[PREVIOUS_CHAMPION_TAG] == worse

    result = CliRunner().invoke(app, ["rollback", "--reason", "test", "--set", f"monitor.lock_file={gate_cfg.monitor.lock_file}"])
    assert result.exit_code == ExitCode.OK, result.output
    assert current_champion(registry_client(gate_cfg), gate_cfg) == worse
    assert version_tags(gate_cfg, better)["role"] == "rolled_back"

    assert rollback(gate_cfg).to_version == "1"
    assert current_champion(registry_client(gate_cfg), gate_cfg) == "1"


def test_flag_rate_bound_blocks_promotion(base, gate_cfg: DictConfig):
    _, _, data, holdout = base
    worse = register_worse(data, gate_cfg)
    force_promote(gate_cfg, worse, "test: start from a weak champion")
    flags_everything = register_champion_copy(data, gate_cfg, threshold=0.0)

    decision = run_gate(gate_cfg, flags_everything, holdout, "test holdout")
    failed = {check.name for check in decision.checks if not check.passed}
    assert not decision.promote
    assert failed == {"flag_rate_human"}
    assert decision.challenger["flag_rate_human"] == pytest.approx(1.0)
    assert current_champion(registry_client(gate_cfg), gate_cfg) == worse


def test_small_holdout_keeps_champion(base, gate_cfg: DictConfig):
    _, _, data, holdout = base
    worse = register_worse(data, gate_cfg)
    force_promote(gate_cfg, worse, "test: start from a weak champion")
    better = register_champion_copy(data, gate_cfg)

    decision = run_gate(gate_cfg, better, holdout.head(20), "first 20 held-out sessions")
    failed = {check.name for check in decision.checks if not check.passed}
    assert not decision.promote
    assert "holdout_sessions" in failed
    assert current_champion(registry_client(gate_cfg), gate_cfg) == worse


def test_rollback_without_history_fails(gate_cfg: DictConfig):
    with pytest.raises(NoPreviousChampionError):
        rollback(gate_cfg)
    result = CliRunner().invoke(app, ["rollback", "--set", f"monitor.lock_file={gate_cfg.monitor.lock_file}"])
    assert result.exit_code == ExitCode.NO_PREVIOUS_CHAMPION
    assert current_champion(registry_client(gate_cfg), gate_cfg) == "1"


def wait_for_text(paths: list[Path], text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(path.is_file() and text in path.read_text() for path in paths):
        assert time.monotonic() < deadline, f"{text!r} not logged in {paths}: {[p.read_text() for p in paths if p.is_file()]}"
        time.sleep(0.2)


def test_concurrent_promotions_serialize(base, gate_cfg: DictConfig, tmp_path: Path):
    _, _, data, holdout = base
    worse = register_worse(data, gate_cfg)
    force_promote(gate_cfg, worse, "test: start from a weak champion")
    first, second = register_champion_copy(data, gate_cfg), register_champion_copy(data, gate_cfg)
    holdout_path = tmp_path / "holdout.parquet"
    holdout.to_parquet(holdout_path, index=False)

    botclick = str(Path(sys.executable).parent / "botclick")
    lock = Path(str(gate_cfg.monitor.lock_file))
    logs = [tmp_path / f"promote-{version}.log" for version in (first, second)]
    with exclusive_lock(lock, 5.0, 0.05):
        processes = [
            subprocess.Popen(
                [botclick, "promote", version, "--holdout", str(holdout_path), "--set", f"monitor.lock_file={lock}", "--set", "monitor.lock_poll_s=0.1"],
                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log.open("w"),
            )
            for version, log in zip((first, second), logs, strict=True)
        ]
        wait_for_text(logs, "waiting for lock", WAIT_FOR_PROCESSES_S)
        assert current_champion(registry_client(gate_cfg), gate_cfg) == worse

    codes = {version: process.wait(timeout=WAIT_FOR_PROCESSES_S) for version, process in zip((first, second), processes, strict=True)}
    assert sorted(codes.values()) == [ExitCode.OK, ExitCode.NOT_PROMOTED], [log.read_text()[-2000:] for log in logs]
    winner = next(version for version, code in codes.items() if code == ExitCode.OK)
    loser = next(version for version, code in codes.items() if code == ExitCode.NOT_PROMOTED)
    assert current_champion(registry_client(gate_cfg), gate_cfg) == winner
    assert version_tags(gate_cfg, winner)[PREVIOUS_CHAMPION_TAG] == worse
    assert version_tags(gate_cfg, loser)["gate_decision"] == "rejected"
    assert pd.read_parquet(holdout_path).shape == holdout.shape
