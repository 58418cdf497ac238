"""Explain a bot score with the features that pushed it up most.

Uses XGBoost's per-feature contributions on the log-odds scale: exact SHAP values
(TreeSHAP) by default, or the approximate path attribution (Saabas), which costs about
a quarter as much for one row.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import xgboost as xgb


def top_reasons(
    booster: xgb.Booster,
    matrix: np.ndarray,
    names: Sequence[str],
    descriptions: Mapping[str, str],
    count: int,
    approximate: bool = False,
    data: xgb.DMatrix | None = None,
) -> list[list[dict[str, float | str]]]:
    """Return, per row, the `count` features with the largest positive contribution.

    Each reason has the feature name, a plain-language text, the row's value and the
    contribution in log-odds. Rows whose score nothing pushed up get no reasons.
    With `approximate`, contributions are Saabas path attributions instead of SHAP values.
    Both sum, with the bias, to the row's log-odds. `data` is a DMatrix of `matrix` that
    the caller built already (see `predict_proba_rows`); its columns are not checked again.
    """
    if len(matrix) == 0:
        return []
    validate = data is None
    if data is None:
        data = xgb.DMatrix(matrix, feature_names=list(names))
    contributions = booster.predict(data, pred_contribs=True, approx_contribs=approximate, validate_features=validate)[:, :-1]
    reasons: list[list[dict[str, float | str]]] = []
    for row, values in zip(contributions, matrix, strict=True):
        order = np.argsort(-row, kind="stable")[:count]
        reasons.append(
            [
                {
                    "feature": names[i],
                    "text": descriptions.get(names[i], names[i]),
                    "value": None if math.isnan(values[i]) else float(values[i]),
                    "contribution": float(row[i]),
                }
                for i in order
                if row[i] > 0
            ]
        )
    return reasons


def format_reasons(reasons: list[dict[str, float | str]]) -> str:
    """Render reasons as one line, e.g. "share of images... = 0 (+1.20)"."""
    parts = []
    for reason in reasons:
        value = reason["value"]
        shown = "n/a" if value is None else f"{value:.3g}"
        parts.append(f"{reason['text']} = {shown} (+{reason['contribution']:.2f})")
    return "; ".join(parts)
