"""Run the pipeline stages in process, with every output in a temp folder."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

from omegaconf import DictConfig

from src.config import compose_config, write_params

OUTPUT_PATHS = {
    "raw_events": "data/raw/clicks.parquet",
    "quarantine": "data/raw/quarantine.jsonl",
    "collect_report": "reports/collect.json",
    "events": "data/interim/events.parquet",
    "preprocess_report": "reports/preprocess.json",
    "session_labels": "data/interim/session_labels.parquet",
    "labels_report": "reports/labels.json",
    "features": "data/features/features.parquet",
    "model_dir": "models",
    "metrics": "reports/metrics.json",
    "evaluation": "reports/evaluation.json",
    "plots_dir": "reports/plots",
}


def workdir_config(workdir: Path, log_dir: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose the config with every output path, and the MLflow artifacts, under `workdir`."""
    paths = [f"paths.{key}={workdir / value}" for key, value in OUTPUT_PATHS.items()]
    reviews = workdir / "data/labels/reviews.csv"
    if not reviews.exists():
        reviews.parent.mkdir(parents=True, exist_ok=True)
        reviews.write_text("session_id,label,reviewer,reviewed_at,model_version,note\n", encoding="utf-8")
    extra = [
        f"paths.log_dir={log_dir}",
        f"paths.sim_dir={workdir / 'logs/simulated'}",
        f"paths.reviews={reviews}",
        f"mlflow.artifact_root={workdir / 'mlartifacts'}",
    ]
    cfg = compose_config([*paths, *extra, *overrides])
    write_params(cfg, workdir / "params.yaml")
    return cfg


def run_stages(cfg: DictConfig) -> dict:
    """Run collect through evaluate in process and return the metrics."""
    from src.data.collect import collect
    from src.data.labels import build_labels
    from src.data.preprocess import preprocess
    from src.features.featurize import featurize
    from src.train.evaluate import evaluate
    from src.train.train import train

    p = {key: Path(str(value)) for key, value in cfg.paths.items()}
    if bool(cfg.data.mix_simulated) and not p["sim_dir"].is_dir():
        from src.data.simulate import simulate

        simulate(cfg, p["sim_dir"])
    collect(p["log_dir"], p["raw_events"], p["quarantine"], p["collect_report"], cfg)
    preprocess(p["raw_events"], p["events"], p["preprocess_report"], cfg)
    build_labels(p["events"], p["reviews"], p["ground_truth"], p["session_labels"], p["labels_report"], cfg)
    featurize(p["events"], p["features"], cfg)
    train(p["features"], p["session_labels"], p["model_dir"], cfg)
    return evaluate(p["features"], p["session_labels"], p["model_dir"], p["metrics"], p["evaluation"], p["plots_dir"], cfg)


def import_script(path: Path, name: str) -> ModuleType:
    """Import a script that is not in a package (such as benchmarks/*.py) as module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
