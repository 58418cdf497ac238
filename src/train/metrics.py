"""Ranking and operating-point metrics for bot scores (label 1 = bot)."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

# Absorbs float error in target_fpr * n, e.g. 0.01 * 300 = 3.0000000000000004.
FLOAT_SLACK = 1e-9


def threshold_at_fpr(negative_scores: np.ndarray, target_fpr: float) -> float:
    """Return the lowest score threshold that flags at most `target_fpr` of the negatives.

    A score flags when it is >= the threshold. With no negatives nothing bounds the
    threshold, so minus infinity is returned.
    """
    if len(negative_scores) == 0:
        return -math.inf
    ordered = np.sort(negative_scores)
    candidates = np.unique(ordered)
    flagged_count = len(ordered) - np.searchsorted(ordered, candidates, side="left")
    # Compare counts, not shares, so that 1 of 100 is within a 1% target despite rounding.
    allowed = np.nonzero(flagged_count <= math.floor(target_fpr * len(ordered) + FLOAT_SLACK))[0]
    if len(allowed) == 0:
        return float(np.nextafter(candidates[-1], math.inf))
    return float(candidates[allowed[0]])


def recall_at_fpr(labels: np.ndarray, scores: np.ndarray, target_fpr: float) -> float:
    """Return the recall at the threshold that keeps the false-positive rate <= `target_fpr`."""
    positives = scores[labels == 1]
    if len(positives) == 0:
        return math.nan
    threshold = threshold_at_fpr(scores[labels == 0], target_fpr)
    return float(np.mean(positives >= threshold))


def recall_at_threshold(positive_scores: np.ndarray, threshold: float) -> float:
    """Return the share of positives flagged at `threshold`; NaN when there are none."""
    if len(positive_scores) == 0:
        return math.nan
    return float(np.mean(positive_scores >= threshold))


def ranking_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Return ROC-AUC and PR-AUC (average precision); NaN when a class is missing."""
    if len(np.unique(labels)) < 2:
        return {"roc_auc": math.nan, "pr_auc": math.nan}
    return {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "pr_auc": float(average_precision_score(labels, scores)),
    }


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the ROC curve as (false-positive rates, true-positive rates)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr
