"""Evaluation plots: data files for `dvc plots show` and PNG images for offline viewing and MLflow."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, precision_recall_curve, roc_curve  # noqa: E402

logger = logging.getLogger(__name__)

PNG_DPI = 110


def write_curves(plots_dir: Path, labels: np.ndarray, scores: dict[str, np.ndarray]) -> list[Path]:
    """Write ROC and PR curves per scorer as CSV (for DVC) and one PNG per curve type."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    figures = {"roc": plt.subplots(), "pr": plt.subplots()}
    for name, score in scores.items():
        fpr, tpr, _ = roc_curve(labels, score)
        precision, recall, _ = precision_recall_curve(labels, score)
        roc_path, pr_path = plots_dir / f"roc_{name}.csv", plots_dir / f"pr_{name}.csv"
        pd.DataFrame({"fpr": fpr, "tpr": tpr}).to_csv(roc_path, index=False)
        pd.DataFrame({"recall": recall, "precision": precision}).to_csv(pr_path, index=False)
        figures["roc"][1].plot(fpr, tpr, label=name)
        figures["pr"][1].plot(recall, precision, label=name)
        written += [roc_path, pr_path]

    axis_labels = {"roc": ("false-positive rate", "true-positive rate"), "pr": ("recall", "precision")}
    for kind, (figure, axes) in figures.items():
        axes.set_xlabel(axis_labels[kind][0])
        axes.set_ylabel(axis_labels[kind][1])
        axes.set_title(f"{kind.upper()} on test sessions")
        axes.legend()
        png = plots_dir / f"{kind}.png"
        figure.savefig(png, dpi=PNG_DPI, bbox_inches="tight")
        plt.close(figure)
        written.append(png)
    return written


def write_confusion(plots_dir: Path, labels: np.ndarray, flagged: np.ndarray) -> list[Path]:
    """Write the model's confusion matrix at its threshold as CSV rows and a PNG."""
    names = np.where(labels == 1, "bot", "human")
    predicted = np.where(flagged, "bot", "human")
    csv_path = plots_dir / "confusion.csv"
    pd.DataFrame({"actual": names, "predicted": predicted}).to_csv(csv_path, index=False)

    display = ConfusionMatrixDisplay.from_predictions(names, predicted, labels=["human", "bot"])
    display.ax_.set_title("model at its operating threshold, test sessions")
    png = plots_dir / "confusion.png"
    display.figure_.savefig(png, dpi=PNG_DPI, bbox_inches="tight")
    plt.close(display.figure_)
    return [csv_path, png]


def write_importance(plots_dir: Path, gain: dict[str, float]) -> list[Path]:
    """Write feature importance (total gain) as CSV and a horizontal bar PNG."""
    table = pd.DataFrame({"feature": list(gain), "gain": list(gain.values())}).sort_values("gain")
    csv_path = plots_dir / "importance.csv"
    table.to_csv(csv_path, index=False)

    figure, axes = plt.subplots(figsize=(7, max(3.0, 0.25 * len(table))))
    axes.barh(table["feature"], table["gain"])
    axes.set_xlabel("total gain")
    axes.set_title("feature importance")
    png = plots_dir / "importance.png"
    figure.savefig(png, dpi=PNG_DPI, bbox_inches="tight")
    plt.close(figure)
    return [csv_path, png]
