"""Config composition: params.yaml matches conf/, environments, and the prod guard."""

from __future__ import annotations

import pytest
import yaml
from omegaconf import OmegaConf

from src.config import check_env_allowed, compose_config, load_params
from tests.conftest import REPO_ROOT


def test_params_file_matches_conf():
    """The committed params.yaml is exactly what DVC's Hydra mode composes from conf/."""
    committed = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    composed = OmegaConf.to_container(compose_config(), resolve=True)
    assert committed == composed, "params.yaml differs from conf/: run `botclick params` (or `make run` without LOGS)"


def test_dev_paths_in_repo_root(cfg):
    assert str(cfg.env.name) == "dev"
    assert str(cfg.paths.raw_events) == "./data/raw/clicks.parquet"
    assert str(cfg.mlflow.tracking_uri) == "sqlite:///mlflow.db"


def test_test_env_uses_own_stores():
    test_cfg = compose_config(["env=test"])
    assert str(test_cfg.paths.raw_events).startswith("envs/test/")
    assert "envs/test" in str(test_cfg.mlflow.tracking_uri)
    assert str(test_cfg.paths.reviews) == "data/labels/reviews.csv"


def test_prod_forbidden_in_tests():
    with pytest.raises(PermissionError, match="prod"):
        compose_config(["env=prod"])


def test_prod_params_file_forbidden(tmp_path, monkeypatch):
    monkeypatch.delenv("BOTCLICK_FORBID_ENV")
    prod = compose_config(["env=prod"])
    path = tmp_path / "params.yaml"
    path.write_text(OmegaConf.to_yaml(prod), encoding="utf-8")
    monkeypatch.setenv("BOTCLICK_FORBID_ENV", "prod")
    with pytest.raises(PermissionError):
        load_params(path)
    with pytest.raises(PermissionError):
        check_env_allowed(prod)


def test_missing_params_file_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="botclick params"):
        load_params(tmp_path / "params.yaml")
