"""Champion alias moves with a promotion history, rollback, and MLflow records of both.

Every promotion through this module tags the new champion version with
`previous_champion`, so `rollback` can follow the chain back one step at a time.
Versions promoted by the evaluate stage have no such tag; for them, rollback picks the
latest earlier version whose `role` tag is "champion".
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping, Sequence

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig

from src.serve.champion import ChampionNotFoundError
from src.train.tracking import configure_tracking, tracking_uri

logger = logging.getLogger(__name__)

ROLE_TAG = "role"
PREVIOUS_CHAMPION_TAG = "previous_champion"
CHAMPION_ROLE, CHALLENGER_ROLE, ROLLED_BACK_ROLE = "champion", "challenger", "rolled_back"
# MLflow rejects longer parameter values.
MAX_PARAM_CHARS = 6000


class NoPreviousChampionError(LookupError):
    """Raised when rollback finds no earlier champion to return to."""


@dataclass
class RollbackResult:
    """One rollback: the versions the champion alias moved from and to."""

    from_version: str
    to_version: str
    reason: str
    run_id: str


def registry_client(cfg: DictConfig) -> MlflowClient:
    """Point MLflow at the configured tracking store and return a client for it."""
    mlflow.set_tracking_uri(tracking_uri(cfg))
    return MlflowClient(tracking_uri=tracking_uri(cfg))


def now_utc() -> str:
    """Return the current UTC time in ISO 8601, for tags."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def current_champion(client: MlflowClient, cfg: DictConfig) -> str | None:
    """Return the version under the champion alias, or None when there is none."""
    try:
        return str(client.get_model_version_by_alias(str(cfg.mlflow.registered_model), str(cfg.mlflow.champion_alias)).version)
    except MlflowException:
        return None


def set_version_tags(client: MlflowClient, cfg: DictConfig, version: str, tags: Mapping[str, object]) -> None:
    """Set several tags on one model version."""
    for key, value in tags.items():
        client.set_model_version_tag(str(cfg.mlflow.registered_model), version, key, str(value))


def move_champion(client: MlflowClient, cfg: DictConfig, version: str, reason: str) -> str | None:
    """Point the champion alias at `version`, record the previous champion on it, and return that one."""
    name = str(cfg.mlflow.registered_model)
    previous = current_champion(client, cfg)
    client.set_registered_model_alias(name, str(cfg.mlflow.champion_alias), version)
    tags: dict[str, object] = {ROLE_TAG: CHAMPION_ROLE, "promoted_at": now_utc(), "promotion_reason": reason}
    if previous is not None and previous != version:
        tags[PREVIOUS_CHAMPION_TAG] = previous
    set_version_tags(client, cfg, version, tags)
    if version_for_alias(client, cfg, str(cfg.mlflow.challenger_alias)) == version:
        client.delete_registered_model_alias(name, str(cfg.mlflow.challenger_alias))
    logger.info("moved %s@%s from version %s to %s: %s", name, cfg.mlflow.champion_alias, previous, version, reason)
    return previous


def mark_challenger(client: MlflowClient, cfg: DictConfig, version: str) -> None:
    """Point the challenger alias at `version` and tag its role."""
    client.set_registered_model_alias(str(cfg.mlflow.registered_model), str(cfg.mlflow.challenger_alias), version)
    set_version_tags(client, cfg, version, {ROLE_TAG: CHALLENGER_ROLE})


def rollback_target(client: MlflowClient, cfg: DictConfig, current: str) -> str | None:
    """Return the version to roll back to from `current`, or None when there is none."""
    name = str(cfg.mlflow.registered_model)
    previous = client.get_model_version(name, current).tags.get(PREVIOUS_CHAMPION_TAG)
    if previous:
        return str(previous)

    earlier = [
        int(found.version)
        for found in client.search_model_versions(f"name='{name}'")
        if int(found.version) < int(current) and found.tags.get(ROLE_TAG) == CHAMPION_ROLE
    ]
    return str(max(earlier)) if earlier else None


def rollback(cfg: DictConfig, to_version: str | None = None, reason: str = "") -> RollbackResult:
    """Move the champion alias back to the previous champion (or `to_version`) and log it.

    Raises ChampionNotFoundError without a champion, NoPreviousChampionError when no
    earlier champion is known, and ValueError for an unknown or current `to_version`.
    """
    client = registry_client(cfg)
    name = str(cfg.mlflow.registered_model)
    current = current_champion(client, cfg)
    if current is None:
        raise ChampionNotFoundError(f"no model {name}@{cfg.mlflow.champion_alias} to roll back")
    target = to_version or rollback_target(client, cfg, current)
    if target is None:
        raise NoPreviousChampionError(
            f"{name} version {current} has no previous champion recorded; pass --to VERSION to choose one"
        )
    if target == current:
        raise ValueError(f"version {target} is already the champion; choose another version with --to")
    try:
        client.get_model_version(name, target)
    except MlflowException as exc:
        raise ValueError(f"{name} has no version {target!r}; list the versions with `make ui`") from exc

    note = reason or "manual rollback"
    client.set_registered_model_alias(name, str(cfg.mlflow.champion_alias), target)
    set_version_tags(client, cfg, current, {ROLE_TAG: ROLLED_BACK_ROLE, "rolled_back_at": now_utc(), "rollback_reason": note, "rolled_back_to": target})
    set_version_tags(client, cfg, target, {ROLE_TAG: CHAMPION_ROLE, "restored_at": now_utc()})
    run_id = record_run(cfg, "rollback", {"from_version": current, "to_version": target}, {}, {"rollback_reason": note})
    logger.warning("rolled back %s@%s from version %s to %s: %s", name, cfg.mlflow.champion_alias, current, target, note)
    return RollbackResult(current, target, note, run_id)


def record_run(
    cfg: DictConfig,
    run_name: str,
    params: Mapping[str, object],
    metrics: Mapping[str, float | None],
    tags: Mapping[str, object],
    artifacts: Sequence[str] = (),
) -> str:
    """Log a finished MLflow run in the pipeline's experiment and return its id.

    Non-finite metrics are left out. The client API is used rather than
    `mlflow.start_run`, which would resume the run named by MLFLOW_RUN_ID.
    """
    experiment_id = configure_tracking(cfg)
    client = MlflowClient()
    run_id = client.create_run(experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()}).info.run_id
    stamp = int(datetime.now(timezone.utc).timestamp() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items() if v is not None and math.isfinite(float(v))],
        params=[Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in params.items()],
    )
    for path in artifacts:
        client.log_artifact(run_id, path)
    client.set_terminated(run_id)
    return run_id


def version_for_alias(client: MlflowClient, cfg: DictConfig, alias: str) -> str | None:
    """Return the version under `alias`, or None when the alias is not set."""
    try:
        return str(client.get_model_version_by_alias(str(cfg.mlflow.registered_model), alias).version)
    except MlflowException:
        return None


def force_promote(cfg: DictConfig, version: str, reason: str) -> tuple[str | None, str]:
    """Make `version` the champion without the gate; return the previous champion and the MLflow run id.

    The caller holds the monitor lock. Raises ValueError for an unknown version.
    """
    client = registry_client(cfg)
    name = str(cfg.mlflow.registered_model)
    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        raise ValueError(f"{name} has no version {version!r}; list the versions with `make ui`") from exc
    note = f"manual promotion without the gate: {reason or 'no reason given'}"
    previous = move_champion(client, cfg, version, note)
    run_id = record_run(cfg, "manual-promotion", {"version": version, "previous_champion": previous or "none"}, {}, {"promotion_reason": note})
    logger.warning("forced %s version %s to champion (previous %s): %s", name, version, previous, note)
    return previous, run_id
