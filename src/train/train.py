"""Train stage: fit the XGBoost bot-click model on a time-based split and log it to MLflow.

CLI (mirrors dvc.yaml):
    python -m src.train.train FEATURES SESSION_LABELS MODEL_DIR [--params params.yaml]
"""

from __future__ import annotations

import json
import logging
import tempfile
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import typer
import xgboost as xgb
from mlflow.models import infer_signature
from omegaconf import DictConfig, OmegaConf

from src.config import load_params
from src.logs import configure_logging
from src.monitor.reference import log_reference_sample
from src.train.dataset import Dataset, last_rows, load_dataset, mask_training_crawlers, primary_population, session_weights
from src.train.metrics import threshold_at_fpr
from src.train.model_io import ModelMeta, feature_matrix, predict_proba, save_model
from src.train.split import TRAIN, VALID
from src.train.tracking import configure_tracking, data_version, git_commit

logger = logging.getLogger(__name__)

# Booster settings that are not xgboost.train "params" but arguments of their own.
TRAIN_ARGUMENTS = ("num_boost_round", "early_stopping_rounds")
INPUT_EXAMPLE_ROWS = 5
# MLflow run name of the model; evaluate names the baseline runs next to it.
MODEL_RUN_NAME = "xgboost"


def booster_params(model_cfg: DictConfig, seed: int) -> dict[str, object]:
    """Return the xgboost.train params from `model` in the config."""
    params = OmegaConf.to_container(model_cfg, resolve=True)
    assert isinstance(params, dict)
    return {str(k): v for k, v in params.items() if k not in TRAIN_ARGUMENTS} | {"seed": seed}


def _dmatrix(rows: pd.DataFrame, names: list[str], weighted: bool) -> xgb.DMatrix:
    weights = session_weights(rows) if weighted else None
    return xgb.DMatrix(feature_matrix(rows, names), label=rows["label"].to_numpy(), weight=weights, feature_names=names)


def fit_booster(data: Dataset, cfg: DictConfig) -> xgb.Booster:
    """Fit on the train rows (a share of crawlers masked) with early stopping on valid."""
    seed = int(cfg.seed)
    train_rows = mask_training_crawlers(data.part(TRAIN), cfg, seed)
    valid_rows = data.part(VALID)
    if train_rows["label"].nunique() < 2:
        raise ValueError(
            "the training set has a single class; the input needs both bot and presumed-human sessions "
            f"(label counts: {train_rows['label'].value_counts().to_dict()})"
        )

    weighted = bool(cfg.train.weight_by_session)
    train_matrix = _dmatrix(train_rows, data.feature_names, weighted)
    evals = [(train_matrix, "train")]
    if not valid_rows.empty:
        evals.append((_dmatrix(valid_rows, data.feature_names, weighted), "valid"))
    booster = xgb.train(
        booster_params(cfg.model, seed),
        train_matrix,
        num_boost_round=int(cfg.model.num_boost_round),
        evals=evals,
        early_stopping_rounds=int(cfg.model.early_stopping_rounds) if len(evals) > 1 else None,
        verbose_eval=False,
    )
    # Keep only the trees up to the best round, so every consumer (inplace_predict, the
    # MLflow pyfunc, the service) predicts with the same trees.
    best_round = booster.num_boosted_rounds() - 1
    if len(evals) > 1:
        best_round = int(booster.best_iteration)
    return booster[: best_round + 1]


def operating_threshold(booster: xgb.Booster, data: Dataset, cfg: DictConfig) -> float:
    """Return the score threshold that flags `evaluate.target_fpr` of valid presumed-human sessions."""
    valid_last = last_rows(primary_population(data.part(VALID))[0])
    negatives = valid_last[valid_last["label"] == 0]
    scores = predict_proba(booster, feature_matrix(negatives, data.feature_names))
    threshold = threshold_at_fpr(scores, float(cfg.evaluate.target_fpr))
    if not np.isfinite(threshold):
        raise ValueError("the validation set has no presumed-human sessions to set the threshold; add more data")
    return threshold


def log_to_mlflow(booster: xgb.Booster, meta: ModelMeta, data: Dataset, cfg: DictConfig) -> ModelMeta:
    """Log params, the model (with signature and input example), features and versions."""
    configure_tracking(cfg)
    with mlflow.start_run(run_name=MODEL_RUN_NAME) as run:
        mlflow.set_tags({"model_type": "xgboost", "git_commit": meta.git_commit, **meta.extra})
        mlflow.log_params({f"model.{k}": v for k, v in booster_params(cfg.model, int(cfg.seed)).items()})
        mlflow.log_params({f"train.{k}": v for k, v in OmegaConf.to_container(cfg.train, resolve=True).items()})
        mlflow.log_metrics({"best_iteration": meta.best_iteration, "threshold": meta.threshold})
        mlflow.log_dict({"features": data.feature_names}, "features.json")
        # The drift check compares recent traffic with this sample of the training data.
        log_reference_sample(data, booster, cfg)

        example_rows = data.part(VALID).dropna(subset=data.feature_names).head(INPUT_EXAMPLE_ROWS)
        if example_rows.empty:
            example_rows = data.part(TRAIN).head(INPUT_EXAMPLE_ROWS)
        example = example_rows[data.feature_names].astype("float64")
        signature = infer_signature(example, predict_proba(booster, example.to_numpy()))
        info = mlflow.xgboost.log_model(
            booster,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=[f"xgboost-cpu=={version('xgboost-cpu')}", f"pandas=={version('pandas')}"],
            model_format="json",
        )
        with tempfile.TemporaryDirectory() as tmp:
            meta_path = Path(tmp) / "model_meta.json"
            meta.run_id, meta.model_uri = run.info.run_id, info.model_uri
            meta_path.write_text(json.dumps(meta.__dict__, indent=2), encoding="utf-8")
            mlflow.log_artifact(str(meta_path))
    logger.info("logged run %s with model %s", meta.run_id, meta.model_uri)
    return meta


def train(features: Path, labels: Path, model_dir: Path, cfg: DictConfig) -> ModelMeta:
    """Run the train stage end to end and return the saved model's metadata."""
    data = load_dataset(features, labels, cfg)
    logger.info("rows per split: %s", data.rows["split"].value_counts().to_dict())

    booster = fit_booster(data, cfg)
    meta = ModelMeta(
        feature_names=data.feature_names,
        threshold=operating_threshold(booster, data, cfg),
        best_iteration=booster.num_boosted_rounds() - 1,
        git_commit=git_commit(),
        extra=data_version([features, labels]),
    )
    meta.data_version = str(meta.extra["data_version"])
    meta = log_to_mlflow(booster, meta, data, cfg)
    save_model(booster, meta, model_dir)
    logger.info("saved model to %s (threshold %.4f, %d trees)", model_dir, meta.threshold, meta.best_iteration + 1)
    return meta


def main(
    features: Path = typer.Argument(..., help="Feature table parquet (input)."),
    labels: Path = typer.Argument(..., help="Session labels parquet (input)."),
    model_dir: Path = typer.Argument(..., help="Folder for the booster and its metadata (output)."),
    params: Path = typer.Option(Path("params.yaml"), help="Composed params file."),
) -> None:
    """Train the bot-click model and log it to MLflow."""
    configure_logging()
    train(features, labels, model_dir, load_params(params))


if __name__ == "__main__":
    typer.run(main)
