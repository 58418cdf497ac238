"""Feature and prediction drift between two session windows, computed with Evidently 0.7.

Every column gets an explicit Evidently method and threshold from `monitor.drift`, and
the summary reports them per column. These Evidently pitfalls are guarded before the run:

- A column without any value raises ValueError in Evidently, so it is skipped.
- A column with one and the same value in both windows gives NaN scores and division
  warnings, so it is skipped as constant.
- Infinite values count as missing.
- Chi-square divides by a zero expected count when the current window has a category
  that the reference lacks. Rare and unseen categories are therefore counted as one
  `other` category, and categories use the Jensen-Shannon distance, which stays finite.
- Evidently guesses column types and picks its tests by sample size when left alone.
  Here the types come from a DataDefinition and the methods from the config.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from src.monitor.settings import disable_telemetry

disable_telemetry()

from evidently import DataDefinition, Dataset, Report  # noqa: E402  (after the telemetry opt-out)
from evidently.core.report import Snapshot  # noqa: E402
from evidently.metrics import ValueDrift  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

logger = logging.getLogger(__name__)

NUMERICAL, CATEGORICAL = "numerical", "categorical"
FEATURE, PREDICTION = "feature", "prediction"
# Evidently methods whose score is a p-value: they report drift below the threshold.
# Every other method returns a distance and reports drift at or above it.
P_VALUE_METHODS = frozenset(
    {"ks", "chisquare", "z", "t_test", "mannw", "anderson", "cramer_von_mises", "epps_singleton", "fisher_exact", "g_test", "empirical_mmd"}
)
FAILED_TEST = "FAIL"
PASSED_TEST = "SUCCESS"
# Smallest p-value used when ranking p-value columns, so that a p-value of 0 ranks first.
MIN_P_VALUE = 1e-300


@dataclass
class ColumnPlan:
    """Test plan of one column: its type for Evidently, the method and the threshold."""

    column: str
    kind: str
    method: str
    threshold: float
    role: str


@dataclass
class SkippedColumn:
    """A column that was not tested, and why."""

    column: str
    reason: str


@dataclass
class PreparedWindows:
    """Both windows with cleaned columns, ready for Evidently."""

    reference: pd.DataFrame
    current: pd.DataFrame
    plans: list[ColumnPlan]
    skipped: list[SkippedColumn]
    # Categories kept per categorical column; every other value was counted as `other`.
    kept_categories: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class ColumnDrift:
    """The drift score of one column and Evidently's verdict on it."""

    column: str
    kind: str
    method: str
    threshold: float
    score: float
    drifted: bool
    role: str

    @property
    def strength(self) -> float:
        """Return how far past its threshold the score is (above 1 means drift), for ranking."""
        if self.method in P_VALUE_METHODS:
            return self.threshold / max(self.score, MIN_P_VALUE)
        return self.score / self.threshold if self.threshold > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form of the column result."""
        return {
            "column": self.column, "type": self.kind, "method": self.method, "threshold": self.threshold,
            "score": self.score, "drifted": self.drifted,
            "score_kind": "p_value" if self.method in P_VALUE_METHODS else "distance",
        }


@dataclass
class DriftResult:
    """Outcome of one drift run: per-column scores and the three drift signals."""

    columns: list[ColumnDrift]
    skipped: list[SkippedColumn]
    kept_categories: dict[str, list[str]]
    drift_share: float
    share_drifted: float
    feature_drift: bool
    prediction: ColumnDrift | None
    trigger_drifted: list[str]
    tests: dict[str, int]

    @property
    def drifted(self) -> bool:
        """Tell whether any signal reports drift: feature share, prediction or a trigger column."""
        prediction_drift = self.prediction is not None and self.prediction.drifted
        return self.feature_drift or prediction_drift or bool(self.trigger_drifted)

    @property
    def features(self) -> list[ColumnDrift]:
        """Return the tested feature columns, most drifted first."""
        tested = [c for c in self.columns if c.role == FEATURE]
        return sorted(tested, key=lambda c: (not c.drifted, -c.strength, c.column))


def numeric_values(series: pd.Series) -> pd.Series:
    """Return the column as float64 with infinite values as missing."""
    values = pd.to_numeric(series, errors="coerce").astype("float64")
    return values.replace([np.inf, -np.inf], np.nan)


def category_values(series: pd.Series) -> pd.Series:
    """Return the column as text with empty strings as missing."""
    return series.astype("object").map(lambda value: None if pd.isna(value) or str(value) == "" else str(value))


def skip_reason(reference: pd.Series, current: pd.Series) -> str | None:
    """Return why a cleaned column cannot be tested, or None when it can."""
    if reference.notna().sum() == 0:
        return "empty in the reference window"
    if current.notna().sum() == 0:
        return "empty in the current window"
    reference_values, current_values = set(reference.dropna().unique()), set(current.dropna().unique())
    if len(reference_values) == 1 and reference_values == current_values:
        return f"constant: {next(iter(reference_values))} in both windows"
    return None


def bucket_rare(reference: pd.Series, current: pd.Series, min_share: float, other: str) -> tuple[pd.Series, pd.Series, list[str]]:
    """Count categories below `min_share` of the reference, and unseen ones, as `other`.

    Returns both bucketed columns and the kept categories, most frequent first.
    """
    shares = reference.value_counts(normalize=True, dropna=True)
    frequent = [str(value) for value in shares[shares >= min_share].index]
    keep = set(frequent)

    def bucket(series: pd.Series) -> pd.Series:
        return series.map(lambda value: value if pd.isna(value) or value in keep else other)

    return bucket(reference), bucket(current), frequent


def as_category_labels(values: pd.Series) -> pd.Series:
    """Return numeric values as text labels such as "0" and "0.5", keeping missing values."""
    return values.map(lambda value: None if pd.isna(value) else f"{value:g}")


def method_for(kind: str, sample_rows: int, drift_cfg: DictConfig) -> str:
    """Return the configured Evidently method for a column type and window size."""
    methods = drift_cfg.methods
    if kind == CATEGORICAL:
        return str(methods.categorical)
    if sample_rows <= int(drift_cfg.large_sample_rows):
        return str(methods.numerical_small)
    return str(methods.numerical_large)


def threshold_for(column: str, method: str, drift_cfg: DictConfig) -> float:
    """Return the column's threshold: its own entry in column_thresholds, else the method's."""
    if column in drift_cfg.column_thresholds:
        return float(drift_cfg.column_thresholds[column])
    if method not in drift_cfg.thresholds:
        raise ValueError(
            f"no threshold for Evidently method {method!r}; add monitor.drift.thresholds.{method} "
            "to conf/monitor/default.yaml"
        )
    return float(drift_cfg.thresholds[method])


def prepare_column(
    name: str, reference: pd.Series, current: pd.Series, is_category: bool, drift_cfg: DictConfig
) -> tuple[pd.Series, pd.Series, str, list[str] | None] | str:
    """Clean one column of both windows and choose its type.

    Returns (reference, current, type, kept categories or None), or the reason to skip it.
    """
    if is_category:
        ref, cur = category_values(reference), category_values(current)
    else:
        ref, cur = numeric_values(reference), numeric_values(current)
    reason = skip_reason(ref, cur)
    if reason is not None:
        return reason

    if is_category:
        ref, cur, categories = bucket_rare(ref, cur, float(drift_cfg.rare_category_share), str(drift_cfg.other_category))
        reason = skip_reason(ref, cur)
        return (ref, cur, CATEGORICAL, categories) if reason is None else f"{reason} after rare categories were counted as other"

    distinct = pd.concat([ref, cur]).nunique(dropna=True)
    if distinct <= int(drift_cfg.discrete_max_unique):
        return as_category_labels(ref), as_category_labels(cur), CATEGORICAL, None
    return ref, cur, NUMERICAL, None


def prepare_windows(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric_columns: Sequence[str],
    categorical_columns: Sequence[str],
    prediction_column: str | None,
    drift_cfg: DictConfig,
) -> PreparedWindows:
    """Clean, type and plan every column; columns that cannot be tested are listed as skipped."""
    sample_rows = min(len(reference), len(current))
    roles = {name: FEATURE for name in [*numeric_columns, *categorical_columns]}
    if prediction_column is not None:
        roles[prediction_column] = PREDICTION
    categorical = set(categorical_columns)

    ref_out, cur_out = pd.DataFrame(index=range(len(reference))), pd.DataFrame(index=range(len(current)))
    plans: list[ColumnPlan] = []
    skipped: list[SkippedColumn] = []
    kept_categories: dict[str, list[str]] = {}
    for name, role in roles.items():
        if name not in reference.columns or name not in current.columns:
            window = "reference" if name not in reference.columns else "current"
            skipped.append(SkippedColumn(name, f"missing in the {window} window"))
            continue
        prepared = prepare_column(name, reference[name].reset_index(drop=True), current[name].reset_index(drop=True), name in categorical, drift_cfg)
        if isinstance(prepared, str):
            skipped.append(SkippedColumn(name, prepared))
            continue

        ref_out[name], cur_out[name], kind, categories = prepared
        if categories is not None:
            kept_categories[name] = categories
        plans.append(plan_column(name, kind, role, sample_rows, drift_cfg))
    return PreparedWindows(ref_out, cur_out, plans, skipped, kept_categories)


def plan_column(name: str, kind: str, role: str, sample_rows: int, drift_cfg: DictConfig) -> ColumnPlan:
    """Choose the method and threshold of one column; the prediction column may have its own."""
    prediction_cfg = drift_cfg.prediction
    method = method_for(kind, sample_rows, drift_cfg)
    if role == PREDICTION and prediction_cfg.method is not None:
        method = str(prediction_cfg.method)
    threshold = threshold_for(name, method, drift_cfg)
    if role == PREDICTION and prediction_cfg.threshold is not None:
        threshold = float(prediction_cfg.threshold)
    return ColumnPlan(name, kind, method, threshold, role)


def run_evidently(prepared: PreparedWindows, drift_share: float) -> Snapshot:
    """Run an Evidently Report with tests: a drift preset over the features and ValueDrift on the prediction."""
    numerical = [p.column for p in prepared.plans if p.kind == NUMERICAL]
    categorical = [p.column for p in prepared.plans if p.kind == CATEGORICAL]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)

    features = [p for p in prepared.plans if p.role == FEATURE]
    metrics: list[Any] = []
    if features:
        metrics.append(
            DataDriftPreset(
                columns=[p.column for p in features],
                per_column_method={p.column: p.method for p in features},
                per_column_threshold={p.column: p.threshold for p in features},
                drift_share=drift_share,
            )
        )
    metrics += [ValueDrift(column=p.column, method=p.method, threshold=p.threshold) for p in prepared.plans if p.role == PREDICTION]

    columns = [p.column for p in prepared.plans]
    current = Dataset.from_pandas(prepared.current[columns], data_definition=definition)
    reference = Dataset.from_pandas(prepared.reference[columns], data_definition=definition)
    return Report(metrics, include_tests=True).run(current, reference)


def read_snapshot(snapshot: Snapshot) -> tuple[dict[str, float], dict[str, str], float | None, str | None]:
    """Return per-column scores, per-column test status, the drifted share and its test status."""
    content = snapshot.dict()
    column_of: dict[str, str] = {}
    scores: dict[str, float] = {}
    share, share_metric = None, None
    for metric in content["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            column_of[metric["id"]] = config["column"]
            scores[config["column"]] = float(metric["value"])
        elif config["type"].endswith("DriftedColumnsCount"):
            share, share_metric = float(metric["value"]["share"]), metric["id"]

    statuses: dict[str, str] = {}
    share_status = None
    for test in content["tests"]:
        metric_id = test["metric_config"]["metric_id"]
        status = str(getattr(test["status"], "value", test["status"]))
        if metric_id == share_metric:
            share_status = status
        elif metric_id in column_of:
            statuses[column_of[metric_id]] = status
    return scores, statuses, share, share_status


def summarize(prepared: PreparedWindows, snapshot: Snapshot, drift_cfg: DictConfig) -> DriftResult:
    """Turn the Evidently snapshot into a DriftResult; a non-finite score makes the column skipped."""
    scores, statuses, share, share_status = read_snapshot(snapshot)
    columns: list[ColumnDrift] = []
    skipped = list(prepared.skipped)
    for plan in prepared.plans:
        score = scores.get(plan.column, math.nan)
        if not math.isfinite(score):
            skipped.append(SkippedColumn(plan.column, f"Evidently returned no finite {plan.method} score"))
            continue
        drifted = statuses.get(plan.column) == FAILED_TEST
        columns.append(ColumnDrift(plan.column, plan.kind, plan.method, plan.threshold, score, drifted, plan.role))

    features = [c for c in columns if c.role == FEATURE]
    share_drifted = share if share is not None and math.isfinite(share) else 0.0
    prediction = next((c for c in columns if c.role == PREDICTION), None)
    triggers = set(drift_cfg.trigger_columns)
    return DriftResult(
        columns=columns,
        skipped=skipped,
        kept_categories=prepared.kept_categories,
        drift_share=float(drift_cfg.drift_share),
        share_drifted=share_drifted,
        feature_drift=share_status == FAILED_TEST and bool(features),
        prediction=prediction,
        trigger_drifted=sorted(c.column for c in features if c.drifted and c.column in triggers),
        tests={
            "passed": sum(status == PASSED_TEST for status in [*statuses.values(), share_status]),
            "failed": sum(status == FAILED_TEST for status in [*statuses.values(), share_status]),
        },
    )


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric_columns: Sequence[str],
    categorical_columns: Sequence[str],
    prediction_column: str | None,
    drift_cfg: DictConfig,
) -> tuple[DriftResult, Snapshot | None]:
    """Compare the windows column by column and return the result and the Evidently snapshot.

    The snapshot is None when no column can be tested.
    """
    prepared = prepare_windows(reference, current, numeric_columns, categorical_columns, prediction_column, drift_cfg)
    for item in prepared.skipped:
        logger.info("drift check skips column %s: %s", item.column, item.reason)
    if not prepared.plans:
        empty = DriftResult([], prepared.skipped, {}, float(drift_cfg.drift_share), 0.0, False, None, [], {"passed": 0, "failed": 0})
        return empty, None

    snapshot = run_evidently(prepared, float(drift_cfg.drift_share))
    return summarize(prepared, snapshot, drift_cfg), snapshot
