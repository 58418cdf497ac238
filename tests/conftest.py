"""Shared fixtures: the composed config, the real logs and a preprocessed real-log table."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import DictConfig

from src.config import compose_config, write_params

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# Tests never touch production stores: composing env=prod raises in this process and its children.
os.environ["BOTCLICK_FORBID_ENV"] = "prod"

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_LOGS = REPO_ROOT.parent / "shared" / "data" / "access_logs"


@pytest.fixture(scope="session")
def cfg() -> DictConfig:
    """The default configuration, without mixing in the workspace's simulated logs."""
    return compose_config(["data.mix_simulated=false"])


@pytest.fixture(scope="session")
def real_logs_dir() -> Path:
    """The folder of real access logs beside the repository; skips when it is absent."""
    if not REAL_LOGS.is_dir() or not any(REAL_LOGS.glob("*.log")):
        pytest.skip(f"real access logs not found at {REAL_LOGS}; they live beside the repository in shared/data")
    return REAL_LOGS


@pytest.fixture(scope="session")
def real_events(real_logs_dir: Path, tmp_path_factory: pytest.TempPathFactory, cfg: DictConfig) -> pd.DataFrame:
    """Collect and preprocess the real logs once per test session."""
    from src.data.collect import collect
    from src.data.preprocess import preprocess

    work = tmp_path_factory.mktemp("real_events")
    real_cfg = compose_config(["data.log_globs=['*.log']", "data.mix_simulated=false"])
    collect(real_logs_dir, work / "raw.parquet", work / "quarantine.jsonl", work / "collect.json", real_cfg)
    preprocess(work / "raw.parquet", work / "events.parquet", work / "preprocess.json", real_cfg)
    return pd.read_parquet(work / "events.parquet")


@pytest.fixture()
def params_file(tmp_path: Path, cfg: DictConfig) -> Path:
    """A params.yaml for the default config in a temp folder."""
    return write_params(cfg, tmp_path / "params.yaml")
