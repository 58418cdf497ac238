"""Service settings are checked at startup, and decisions follow the thresholds."""

from __future__ import annotations

import pytest

from src.config import compose_config
from src.serve.scorer import decide
from src.serve.settings import ServeConfigError, ServeSettings

INVALID = [
    ("serve.block_threshold=1.5", "serve.block_threshold"),
    ("serve.flag_threshold=-0.1", "serve.flag_threshold"),
    ("serve.max_batch_events=0", "serve.max_batch_events"),
    ("serve.explain_decisions=[maybe]", "serve.explain_decisions"),
    ("serve.rules.decision_when_matched=deny", "serve.rules.decision_when_matched"),
    ("serve.store.table='clicks-2026'", "serve.store.table"),
    ("serve.poll_interval_s=0", "serve.poll_interval_s"),
]


def test_default_settings_are_valid():
    settings = ServeSettings.from_config(compose_config())
    assert settings.host == "127.0.0.1"
    assert settings.flag_threshold is None


@pytest.mark.parametrize(("override", "key"), INVALID, ids=[key for _, key in INVALID])
def test_invalid_setting_names_key(override, key):
    with pytest.raises(ServeConfigError, match=key.replace(".", r"\.")):
        ServeSettings.from_config(compose_config([override]))


def test_flag_above_block_is_rejected():
    with pytest.raises(ServeConfigError, match="block_threshold"):
        ServeSettings.from_config(compose_config(["serve.flag_threshold=0.9", "serve.block_threshold=0.5"]))


def test_store_url_env_overrides_config(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("BOTCLICK_CLICK_STORE_URL", url)
    assert ServeSettings.from_config(compose_config()).store.url == url


@pytest.mark.parametrize(
    ("probability", "expected"),
    [(0.0, "allow"), (0.299, "allow"), (0.3, "flag"), (0.9, "flag"), (0.9000001, "block"), (1.0, "block")],
)
def test_decision_thresholds(probability, expected):
    assert decide(probability, flag_threshold=0.3, block_threshold=0.9) == expected


def test_serve_with_stale_params_names_fix(tmp_path, caplog):
    """A params file from before a new serve key exits 2 and names the fix: recompose it."""
    from omegaconf import OmegaConf
    from typer.testing import CliRunner

    from src.cli import app
    from src.config import write_params

    cfg = compose_config()
    OmegaConf.set_struct(cfg, False)
    del cfg.serve["benign_automation"]
    params = write_params(cfg, tmp_path / "params.yaml")

    result = CliRunner().invoke(app, ["serve", "--params", str(params), "--port", "1"])

    assert result.exit_code == 2
    assert "benign_automation" in caplog.text
    assert "Run `botclick params`" in caplog.text
