"""Release step 1: a dry run of the whole pipeline in the release environment, in process.

The stages run in this process, as `tests/helpers.run_stages` and the monitor's
in-process retrain do, rather than through `dvc exp run`: that needs no git commit and
no DVC cache, and leaves dvc.lock and params.yaml of the workspace alone.

The evaluate stage registers the model it trained. During the dry run the config's
champion and challenger aliases are both replaced by `release.candidate_alias`, so the
stage can only move that alias and the real champion stays where it is until the gate.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf

from src.release.settings import ReleaseSettings
from src.train.dataset import last_rows, load_dataset
from src.train.model_io import load_model
from src.train.split import TEST
from src.train.tracking import tracking_uri

logger = logging.getLogger(__name__)

CANDIDATE_ROLE = "candidate"


@dataclass
class DryRunResult:
    """The candidate the dry run registered, its metrics, and the test-split sessions for the gate."""

    version: str
    run_id: str
    metrics: dict[str, Any]
    holdout: pd.DataFrame
    outputs: dict[str, str] = field(default_factory=dict)


def candidate_config(cfg: DictConfig, settings: ReleaseSettings) -> DictConfig:
    """Return `cfg` with both registry aliases set to the candidate alias, and auto-promotion off where supported."""
    overrides = {"mlflow": {"champion_alias": settings.candidate_alias, "challenger_alias": settings.candidate_alias}}
    if "auto_promote" in cfg.evaluate:
        overrides["evaluate"] = {"auto_promote": False}
    merged = OmegaConf.merge(cfg, overrides)
    assert isinstance(merged, DictConfig)
    return merged


def ensure_simulated_logs(cfg: DictConfig, settings: ReleaseSettings) -> bool:
    """Simulate traffic into paths.sim_dir when the pipeline reads it and it has no log yet; return True when it did."""
    from src.data.simulate import simulate

    sim_dir, log_dir = Path(str(cfg.paths.sim_dir)), Path(str(cfg.paths.log_dir))
    reads_simulation = sim_dir.resolve() == log_dir.resolve() or bool(cfg.data.get("mix_simulated", False))
    if not settings.simulate_when_missing or not reads_simulation or (sim_dir / str(cfg.simulate.log_file)).is_file():
        return False
    logger.info("no simulator log in %s yet; simulating traffic for the dry run", sim_dir)
    simulate(cfg, sim_dir, scale=settings.simulate_scale)
    return True


def run_stages(cfg: DictConfig) -> dict[str, Any]:
    """Run collect through evaluate with the paths of `cfg`; return the evaluate metrics."""
    from src.data.collect import collect
    from src.data.labels import build_labels
    from src.data.preprocess import preprocess
    from src.features.featurize import featurize
    from src.train.evaluate import evaluate
    from src.train.train import train

    p = {key: Path(str(value)) for key, value in cfg.paths.items()}
    for stage, run in (
        ("collect", lambda: collect(p["log_dir"], p["raw_events"], p["quarantine"], p["collect_report"], cfg)),
        ("preprocess", lambda: preprocess(p["raw_events"], p["events"], p["preprocess_report"], cfg)),
        ("labels", lambda: build_labels(p["events"], p["reviews"], p["ground_truth"], p["session_labels"], p["labels_report"], cfg)),
        ("featurize", lambda: featurize(p["events"], p["features"], cfg)),
        ("train", lambda: train(p["features"], p["session_labels"], p["model_dir"], cfg)),
    ):  # fmt: skip
        logger.info("dry run: %s stage", stage)
        run()
    logger.info("dry run: evaluate stage")
    return evaluate(p["features"], p["session_labels"], p["model_dir"], p["metrics"], p["evaluation"], p["plots_dir"], cfg)


def registered_candidate(cfg: DictConfig) -> tuple[str, str]:
    """Return the version the evaluate stage registered (from paths.evaluation) and its training run id."""
    evaluation_path = Path(str(cfg.paths.evaluation))
    evaluation = json.loads(evaluation_path.read_text(encoding="utf-8"))
    version = str(evaluation.get("promotion", {}).get("version", ""))
    if not version:
        raise RuntimeError(f"{evaluation_path} names no registered version; the evaluate stage did not register the model")
    _, meta = load_model(Path(str(cfg.paths.model_dir)))
    return version, meta.run_id


def mark_candidate(cfg: DictConfig, settings: ReleaseSettings, version: str, run_id: str) -> None:
    """Point the candidate alias at `version` and tag it, replacing the role the evaluate stage gave it."""
    client = MlflowClient(tracking_uri=tracking_uri(cfg))
    name = str(cfg.mlflow.registered_model)
    client.set_registered_model_alias(name, settings.candidate_alias, version)
    client.set_model_version_tag(name, version, "role", CANDIDATE_ROLE)
    client.set_model_version_tag(name, version, "release_status", "dry_run_passed")
    client.set_tag(run_id, "promotion_decision", "release_candidate")
    client.set_tag(run_id, "promotion_reason", "registered by the release dry run; the release gate decides")


def dry_run(cfg: DictConfig, settings: ReleaseSettings) -> DryRunResult:
    """Run the pipeline on the environment's data and return the registered candidate.

    Raises whatever a stage raises; the caller reports it as a failed dry run.
    """
    _ensure_sqlite_folder(tracking_uri(cfg))
    ensure_simulated_logs(cfg, settings)
    run_cfg = candidate_config(cfg, settings)
    metrics = run_stages(run_cfg)
    version, run_id = registered_candidate(run_cfg)
    mark_candidate(cfg, settings, version, run_id)

    data = load_dataset(Path(str(cfg.paths.features)), Path(str(cfg.paths.session_labels)), cfg)
    holdout = last_rows(data.part(TEST)).reset_index(drop=True)
    logger.info("dry run registered candidate version %s (run %s); %d test-split sessions for the gate", version, run_id, len(holdout))
    outputs = {key: str(cfg.paths[key]) for key in ("metrics", "evaluation", "model_dir")}
    return DryRunResult(version, run_id, metrics, holdout, outputs)


def _ensure_sqlite_folder(uri: str) -> None:
    """Create the folder of a SQLite tracking store, which MLflow does not create itself."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        Path(uri[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)
