"""Load the pipeline configuration.

`conf/` (Hydra) is the source of truth. DVC's Hydra integration composes it into
`params.yaml` for `dvc exp run`; `compose_config` does the same composition in process,
so `botclick params`, tests and the service read the values that DVC uses.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"
PARAMS_FILE = "params.yaml"
# `botclick --env NAME` sets this, so every command (and any subprocess) composes that environment.
ENV_VARIABLE = "BOTCLICK_ENV"
# Comma-separated environments that may not be composed here; the test suite forbids prod.
FORBID_VARIABLE = "BOTCLICK_FORBID_ENV"


def check_env_allowed(cfg: DictConfig) -> None:
    """Raise PermissionError when the config's environment is forbidden in this process."""
    forbidden = {name.strip() for name in os.environ.get(FORBID_VARIABLE, "").split(",") if name.strip()}
    name = str(cfg.get("env", {}).get("name", ""))
    if name in forbidden:
        raise PermissionError(
            f"environment {name!r} is forbidden here ({FORBID_VARIABLE}={os.environ[FORBID_VARIABLE]}); "
            "use --env dev or --env test"
        )


def compose_config(overrides: Sequence[str] = (), conf_dir: Path = CONF_DIR) -> DictConfig:
    """Compose `conf/config.yaml` with Hydra override strings such as `model.max_depth=4`."""
    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    check_env_allowed(cfg)
    return cfg


def write_params(cfg: DictConfig, path: Path | str = PARAMS_FILE) -> Path:
    """Write a composed config as a params file, in the layout DVC's Hydra mode writes."""
    target = Path(path)
    target.write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    logger.info("wrote %s", target)
    return target


def load_params(path: Path | str = PARAMS_FILE) -> DictConfig:
    """Load a params file written by DVC or `write_params`.

    Raises FileNotFoundError with the command that creates the file when it is missing.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(
            f"params file not found: {source}. Run `botclick params` (or `dvc exp run`) "
            "in the repo root to compose it from conf/."
        )
    cfg = OmegaConf.load(source)
    if not isinstance(cfg, DictConfig):
        raise ValueError(f"invalid params file {source}: expected a mapping at the top level")
    check_env_allowed(cfg)
    return cfg


def command_config(params_file: Path | str = PARAMS_FILE, overrides: Sequence[str] = ()) -> DictConfig:
    """Return the config for a `botclick` command.

    With BOTCLICK_ENV set (`botclick --env NAME`), conf/ is composed for that environment.
    Otherwise the params file that DVC ran with is used when it exists, else conf/ defaults.
    """
    env = os.environ.get(ENV_VARIABLE, "").strip()
    if env:
        return compose_config([f"env={env}", *overrides])
    if Path(params_file).is_file() and not overrides:
        return load_params(params_file)
    return compose_config(overrides)
