"""Drift computation on hand-made windows: Evidently pitfalls, bucketing, methods and verdicts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from omegaconf import DictConfig, OmegaConf

from src.monitor.drift import CATEGORICAL, NUMERICAL, PREDICTION, compute_drift, prepare_windows
from src.monitor.render import json_ready
from src.monitor.summary import drift_section

ROWS = 400


@pytest.fixture()
def drift_cfg(cfg: DictConfig) -> DictConfig:
    return cfg.monitor.drift


def windows(rng: np.random.Generator, shift: float = 0.0, rows: int = ROWS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two windows with a normal column, a constant, an empty and a category column."""
    def frame(offset: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "rate": rng.normal(10 + offset, 2, rows),
                "gap": rng.exponential(5 + offset, rows),
                "constant": np.zeros(rows),
                "empty": np.full(rows, np.nan),
                "family": rng.choice(["Chrome 142", "Firefox 145", "Safari 26"], rows, p=[0.5, 0.3, 0.2]),
                "bot_probability": rng.beta(1, 4, rows),
            }
        )

    return frame(0.0), frame(shift)


def test_empty_and_constant_columns_skipped(drift_cfg):
    reference, current = windows(np.random.default_rng(1))
    prepared = prepare_windows(reference, current, ["rate", "gap", "constant", "empty"], ["family"], "bot_probability", drift_cfg)
    reasons = {item.column: item.reason for item in prepared.skipped}
    assert reasons["empty"] == "empty in the reference window"
    assert reasons["constant"].startswith("constant")
    assert {plan.column for plan in prepared.plans} == {"rate", "gap", "family", "bot_probability"}


def test_column_empty_in_current_only_skipped(drift_cfg):
    reference, current = windows(np.random.default_rng(2))
    current["rate"] = np.nan
    prepared = prepare_windows(reference, current, ["rate", "gap"], [], None, drift_cfg)
    assert [(s.column, s.reason) for s in prepared.skipped] == [("rate", "empty in the current window")]


def test_infinite_values_count_as_missing(drift_cfg):
    reference, current = windows(np.random.default_rng(3))
    reference["gap"] = np.inf
    prepared = prepare_windows(reference, current, ["gap"], [], None, drift_cfg)
    assert [(s.column, s.reason) for s in prepared.skipped] == [("gap", "empty in the reference window")]


def test_constant_reference_but_varying_current_tested(drift_cfg):
    reference, current = windows(np.random.default_rng(4))
    current.loc[: ROWS // 2, "constant"] = 1.0
    prepared = prepare_windows(reference, current, ["constant"], [], None, drift_cfg)
    assert prepared.skipped == []
    assert prepared.plans[0].kind == CATEGORICAL
    assert prepared.plans[0].method == "jensenshannon"


def test_rare_and_unseen_categories_bucketed(drift_cfg):
    reference = pd.DataFrame({"family": ["Chrome 142"] * 300 + ["Firefox 145"] * 98 + ["Lynx 2"] * 2})
    current = pd.DataFrame({"family": ["Chrome 142"] * 290 + ["Firefox 145"] * 100 + ["Brand-new 1"] * 10})
    prepared = prepare_windows(reference, current, [], ["family"], None, drift_cfg)
    assert prepared.kept_categories["family"] == ["Chrome 142", "Firefox 145"]
    assert set(prepared.current["family"]) == {"Chrome 142", "Firefox 145", "other"}
    assert (prepared.reference["family"] == "other").sum() == 2


def test_method_follows_window_size(drift_cfg):
    rng = np.random.default_rng(5)
    small = prepare_windows(*windows(rng, rows=300), ["rate"], [], None, drift_cfg)
    large = prepare_windows(*windows(rng, rows=1500), ["rate"], [], None, drift_cfg)
    assert small.plans[0].method == "ks"
    assert large.plans[0].method == "wasserstein"
    assert small.plans[0].kind == large.plans[0].kind == NUMERICAL


def test_same_distribution_gives_no_drift(drift_cfg):
    reference, current = windows(np.random.default_rng(6))
    result, snapshot = compute_drift(reference, current, ["rate", "gap", "constant", "empty"], ["family"], "bot_probability", drift_cfg)
    assert snapshot is not None
    assert not result.drifted
    assert result.prediction is not None and result.prediction.role == PREDICTION
    assert not result.prediction.drifted


def test_shifted_columns_give_feature_drift(drift_cfg):
    reference, current = windows(np.random.default_rng(7), shift=3.0)
    result, _ = compute_drift(reference, current, ["rate", "gap", "constant", "empty"], ["family"], "bot_probability", drift_cfg)
    drifted = {c.column for c in result.features if c.drifted}
    assert drifted == {"rate", "gap"}
    assert result.share_drifted == pytest.approx(2 / 3)
    assert result.feature_drift
    assert result.features[0].column in {"rate", "gap"}


def test_few_unseen_categories_not_drift(drift_cfg):
    reference, current = windows(np.random.default_rng(8))
    current.loc[:3, "family"] = "Brand-new 1"
    result, _ = compute_drift(reference, current, ["rate"], ["family"], None, drift_cfg)
    family = next(c for c in result.features if c.column == "family")
    assert not family.drifted
    assert result.trigger_drifted == []


def test_new_browser_versions_trigger_drift(drift_cfg):
    reference, current = windows(np.random.default_rng(9))
    current["family"] = np.where(current["family"] == "Chrome 142", "Chrome 150", current["family"])
    result, _ = compute_drift(reference, current, ["rate", "gap"], ["family"], None, OmegaConf.merge(drift_cfg, {"trigger_columns": ["family"]}))
    assert result.trigger_drifted == ["family"]
    assert [c.column for c in result.features if c.drifted] == ["family"]
    assert result.drifted


def test_all_columns_untestable_returns_no_snapshot(drift_cfg):
    reference, current = windows(np.random.default_rng(10))
    result, snapshot = compute_drift(reference, current, ["constant", "empty"], [], None, drift_cfg)
    assert snapshot is None
    assert not result.drifted
    assert {s.column for s in result.skipped} == {"constant", "empty"}


def test_summary_has_no_nan(drift_cfg):
    reference, current = windows(np.random.default_rng(11), shift=1.0)
    result, _ = compute_drift(reference, current, ["rate", "gap", "constant", "empty"], ["family"], "bot_probability", drift_cfg)
    text = json.dumps(json_ready(drift_section(result)), allow_nan=False)
    assert "NaN" not in text
    for column in json.loads(text)["features"]:
        assert isinstance(column["score"], float)
