"""Configuration and exit codes of the monitoring commands."""

from __future__ import annotations

import logging
import os
from enum import IntEnum
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from src.config import compose_config, load_params

logger = logging.getLogger(__name__)

_UNKNOWN = object()

# Evidently and DVC send usage statistics unless these are set; the commands never send any.
NO_TELEMETRY_ENV = {"DO_NOT_TRACK": "true", "EVIDENTLY_DISABLE_TELEMETRY": "1", "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}


class ExitCode(IntEnum):
    """Process exit codes of the monitoring commands (docs/monitoring.md lists them)."""

    OK = 0
    # An uncaught exception exits with 1 (Python's default).
    INVALID_INPUT = 2
    NO_CHAMPION = 3
    LOCK_TIMEOUT = 4
    RETRAIN_FAILED = 5
    NO_PREVIOUS_CHAMPION = 6
    DRIFT = 10
    NOT_PROMOTED = 11
    NOT_ENOUGH_DATA = 20


def disable_telemetry() -> None:
    """Set the opt-out variables of Evidently, DVC and MLflow unless the caller set them."""
    for name, value in NO_TELEMETRY_ENV.items():
        os.environ.setdefault(name, value)


def load_monitor_config(params: Path | None, overrides: Sequence[str] = ()) -> DictConfig:
    """Return the config for a monitoring command.

    Pipeline sections come from `params` (the params.yaml of the last pipeline run) when
    the file exists, because they describe how the champion was trained. The `monitor`
    section always comes from conf/, so an edit there needs no `botclick params`.
    `overrides` are dot-list settings such as `monitor.window.current_days=3`.
    """
    cfg = compose_config()
    # A params.yaml written by an older conf/ may hold keys that conf/ no longer has.
    OmegaConf.set_struct(cfg, False)
    if params is not None and params.is_file():
        pipeline = load_params(params)
        pipeline.pop("monitor", None)
        cfg = OmegaConf.merge(cfg, pipeline)
    elif params is not None:
        logger.info("no params file at %s; using conf/ composed with Hydra", params)

    for item in overrides:
        key, separator, _ = item.partition("=")
        if not separator or OmegaConf.select(cfg, key.strip(), default=_UNKNOWN) is _UNKNOWN:
            raise ValueError(f"invalid --set {item!r}: expected KEY=VALUE with a key of the config, e.g. monitor.window.current_days=3")
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    assert isinstance(cfg, DictConfig)
    return cfg
