"""Register a trained model and move the champion alias only when the new model wins.

The first model must beat both baselines on masked-UA recall. Later models must beat the
current champion on the promotion metric, measured on the same test sessions. A model
that does not win is registered too, with the challenger alias and the reason.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig

from src.train.metrics import ranking_metrics
from src.train.model_io import predict_proba

logger = logging.getLogger(__name__)

# Metric differences below this are floating-point noise, not an improvement.
METRIC_TOLERANCE = 1e-9
# Rules the first model must beat; src/train/baselines.py computes them.
BASELINES = ("ua_list", "rate_rule")


@dataclass
class PromotionDecision:
    """Outcome of the promotion gate, as logged to MLflow and the evaluation report."""

    promote: bool
    reason: str
    version: str = ""
    champion_before: str = ""
    champion_metric: float | None = None


def champion_version(client: MlflowClient, cfg: DictConfig) -> str | None:
    """Return the current champion's version number, or None when there is none."""
    try:
        found = client.get_model_version_by_alias(str(cfg.mlflow.registered_model), str(cfg.mlflow.champion_alias))
    except MlflowException:
        return None
    return str(found.version)


def champion_metric(version: str, sessions: pd.DataFrame, cfg: DictConfig) -> float:
    """Score the champion on the given test sessions and return its promotion metric.

    Returns NaN when the champion needs a feature the current feature table lacks.
    """
    uri = f"models:/{cfg.mlflow.registered_model}/{version}"
    booster = mlflow.xgboost.load_model(uri)
    names = list(booster.feature_names or [])
    if not names or any(name not in sessions.columns for name in names):
        logger.warning("champion version %s uses features %s that the current table lacks", version, names)
        return math.nan
    scores = predict_proba(booster, sessions[names].to_numpy(dtype=np.float64))
    return ranking_metrics(sessions["label"].to_numpy(), scores)[str(cfg.evaluate.promotion_metric)]


def first_model_decision(metrics: dict[str, dict[str, dict[str, float]]], masked_key: str) -> PromotionDecision:
    """Decide for the first model: it must beat both baselines on session masked-UA recall."""
    ours = metrics["model"]["session"][masked_key]
    rivals = {name: metrics[name]["session"][masked_key] for name in BASELINES}
    beaten = all(ours > value or (math.isnan(value) and not math.isnan(ours)) for value in rivals.values())
    detail = ", ".join(f"{name} {value:.4f}" for name, value in rivals.items())
    if beaten:
        return PromotionDecision(True, f"first model: {masked_key} {ours:.4f} beats {detail}")
    return PromotionDecision(False, f"first model: {masked_key} {ours:.4f} does not beat {detail}")


def challenger_decision(new_value: float, old_value: float, cfg: DictConfig) -> PromotionDecision:
    """Decide against an existing champion on the promotion metric."""
    metric = str(cfg.evaluate.promotion_metric)
    margin = float(cfg.evaluate.min_improvement)
    if math.isnan(old_value):
        return PromotionDecision(False, f"champion could not be scored on the current features; {metric} {new_value:.4f} not compared")
    if new_value > old_value + margin + METRIC_TOLERANCE:
        return PromotionDecision(True, f"{metric} {new_value:.4f} beats champion {old_value:.4f} by more than {margin}", champion_metric=old_value)
    return PromotionDecision(False, f"{metric} {new_value:.4f} does not beat champion {old_value:.4f} by more than {margin}", champion_metric=old_value)


def decide(
    metrics: dict[str, dict[str, dict[str, float]]], test_sessions: pd.DataFrame, masked_key: str, cfg: DictConfig
) -> PromotionDecision:
    """Run the promotion gate for a new model evaluated on `test_sessions`."""
    client = MlflowClient()
    current = champion_version(client, cfg)
    if current is None:
        return first_model_decision(metrics, masked_key)
    if not bool(cfg.evaluate.auto_promote):
        return PromotionDecision(False, "evaluate.auto_promote is false: the promotion gate decides", champion_before=current)

    new_value = metrics["model"]["session"][str(cfg.evaluate.promotion_metric)]
    decision = challenger_decision(new_value, champion_metric(current, test_sessions, cfg), cfg)
    decision.champion_before = current
    return decision


def register(model_uri: str, run_id: str, decision: PromotionDecision, cfg: DictConfig) -> PromotionDecision:
    """Register the model, set the champion or challenger alias, and record the reason."""
    client = MlflowClient()
    name = str(cfg.mlflow.registered_model)
    previous = champion_version(client, cfg)
    registered = mlflow.register_model(model_uri, name)
    decision.version = str(registered.version)
    if decision.promote and previous is not None:
        client.set_model_version_tag(name, previous, "role", "former_champion")
        client.set_model_version_tag(name, decision.version, "previous_champion", previous)

    alias = cfg.mlflow.champion_alias if decision.promote else cfg.mlflow.challenger_alias
    client.set_registered_model_alias(name, str(alias), decision.version)
    role = "champion" if decision.promote else "challenger"
    for key, value in {"role": role, "promotion_reason": decision.reason, "source_run_id": run_id}.items():
        client.set_model_version_tag(name, decision.version, key, value)
    client.set_tag(run_id, "promotion_decision", role)
    client.set_tag(run_id, "promotion_reason", decision.reason)
    logger.info("registered %s version %s as %s: %s", name, decision.version, role, decision.reason)
    return decision
