"""Load the registered champion model with the metadata that scoring needs."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import mlflow
import xgboost as xgb
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig

from src.train.model_io import META_FILE, ModelMeta
from src.train.tracking import tracking_uri

logger = logging.getLogger(__name__)

# MLflow error codes of a registry that responded but has no such model or alias.
NOT_FOUND_ERROR_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


@dataclass
class LoadedModel:
    """A registered model version ready to score."""

    booster: xgb.Booster
    meta: ModelMeta
    version: str


class ChampionNotFoundError(LookupError):
    """Raised when the registry has no model under the champion alias."""


class RegistryUnavailableError(RuntimeError):
    """Raised when the MLflow registry cannot be read (server down, store locked or missing)."""


def champion_version(cfg: DictConfig, client: MlflowClient | None = None) -> str:
    """Return the version the champion alias points at.

    Raises ChampionNotFoundError when the registry has no such model or alias, and
    RegistryUnavailableError when the registry itself cannot be read.
    """
    client = client or MlflowClient(tracking_uri=tracking_uri(cfg))
    name, alias = str(cfg.mlflow.registered_model), str(cfg.mlflow.champion_alias)
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in NOT_FOUND_ERROR_CODES:
            raise ChampionNotFoundError(
                f"no model {name}@{alias} in the MLflow registry at {tracking_uri(cfg)}. "
                "Run `make run` (or `dvc repro`) to train and register one."
            ) from exc
        raise RegistryUnavailableError(
            f"cannot read {name}@{alias} from the MLflow registry at {tracking_uri(cfg)}: {exc.message}"
        ) from exc


def load_version(cfg: DictConfig, version: str, client: MlflowClient | None = None) -> LoadedModel:
    """Load one registered version: the booster and the metadata logged with its run."""
    mlflow.set_tracking_uri(tracking_uri(cfg))
    client = client or MlflowClient(tracking_uri=tracking_uri(cfg))
    name = str(cfg.mlflow.registered_model)
    booster = mlflow.xgboost.load_model(f"models:/{name}/{version}")
    run_id = client.get_model_version(name, version).run_id
    meta_path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=META_FILE)
    with open(meta_path, encoding="utf-8") as handle:
        meta = ModelMeta(**json.load(handle))
    logger.info("loaded %s version %s (run %s, threshold %.4f)", name, version, run_id, meta.threshold)
    return LoadedModel(booster=booster, meta=meta, version=version)


def load_champion(cfg: DictConfig) -> LoadedModel:
    """Load the model the champion alias points at."""
    client = MlflowClient(tracking_uri=tracking_uri(cfg))
    return load_version(cfg, champion_version(cfg, client), client)
