"""Evaluate stage: compare the model with both baselines on the test split, write
metrics and plots, log them to MLflow, and register the model behind a promotion gate.

CLI (mirrors dvc.yaml):
    python -m src.train.evaluate FEATURES SESSION_LABELS MODEL_DIR METRICS EVALUATION PLOTS_DIR [--params params.yaml]
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import typer
import xgboost as xgb
from mlflow import MlflowClient
from omegaconf import DictConfig

from src.config import load_params
from src.features.masking import browser_agent_for, mask_user_agents
from src.logs import configure_logging
from src.train import plots
from src.train.baselines import RATE_RULE, UA_LIST, is_declared_crawler, rate_rule_scores
from src.train.holdout import family_recall
from src.train.dataset import last_rows, load_dataset, primary_population
from src.train.metrics import ranking_metrics, recall_at_fpr, recall_at_threshold, threshold_at_fpr
from src.train.model_io import ModelMeta, feature_matrix, load_model, predict_proba
from src.train.registry import decide, register
from src.train.split import TEST
from src.train.tracking import configure_tracking

logger = logging.getLogger(__name__)

MODEL = "model"
SCORERS = (MODEL, UA_LIST, RATE_RULE)
BASELINE_RUN_NAMES = {UA_LIST: "baseline-ua-list", RATE_RULE: "baseline-request-rate"}


def metric_names(target_fpr: float) -> tuple[str, str]:
    """Return the recall metric names for the target FPR, e.g. recall_at_1pct_fpr."""
    percent = f"{target_fpr * 100:g}".replace(".", "_")
    return f"recall_at_{percent}pct_fpr", f"masked_ua_recall_at_{percent}pct_fpr"


def scorer_outputs(rows: pd.DataFrame, booster: xgb.Booster, meta: ModelMeta, cfg: DictConfig, masked: bool) -> dict[str, np.ndarray]:
    """Score rows with the model and both baselines.

    For masked rows the user-agent list checks the browser user agent that replaced the real one.
    """
    if masked:
        agents = rows["session_id"].map(lambda sid: browser_agent_for(sid, list(cfg.evaluate.browser_user_agents)))
        ua_scores = np.array([float(is_declared_crawler(ua)) for ua in agents], dtype=np.float64)
    else:
        ua_scores = rows["declared_crawler"].to_numpy(dtype=np.float64)
    return {
        MODEL: predict_proba(booster, feature_matrix(rows, meta.feature_names)),
        UA_LIST: ua_scores,
        RATE_RULE: rate_rule_scores(rows, str(cfg.evaluate.rate_rule_feature)),
    }


def click_rows(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Return the rows evaluated at click level and the basis used.

    Affiliate clicks are used when the test set has clicks from both classes. Logs
    without affiliate links fall back to every request, and the returned basis records it.
    """
    clicks = rows[rows["kind"] == "affiliate"]
    if clicks["label"].nunique() == 2:
        return clicks, "affiliate_clicks"
    return rows, "all_requests"


def level_metrics(
    rows: pd.DataFrame, masked_rows: pd.DataFrame, scored: dict[str, np.ndarray], masked_scored: dict[str, np.ndarray], target_fpr: float
) -> dict[str, dict[str, float]]:
    """Return the four metrics of every scorer at one level (session or click)."""
    recall_name, masked_name = metric_names(target_fpr)
    labels = rows["label"].to_numpy()
    result: dict[str, dict[str, float]] = {}
    for scorer in SCORERS:
        scores = scored[scorer]
        threshold = threshold_at_fpr(scores[labels == 0], target_fpr)
        result[scorer] = {
            **ranking_metrics(labels, scores),
            recall_name: recall_at_fpr(labels, scores, target_fpr),
            masked_name: recall_at_threshold(masked_scored[scorer], threshold),
        }
    return result


def _share(flags: np.ndarray) -> float | None:
    """Return the share of True values, or None (JSON null) for an empty array."""
    return float(np.mean(flags)) if len(flags) else None


def reviewed_metrics(sessions: pd.DataFrame, scores: np.ndarray, threshold: float) -> dict[str, object] | None:
    """Return metrics on human-reviewed test sessions, the most trustworthy labels, or None without any."""
    reviewed = (sessions["label_source"] == "review").to_numpy()
    if not reviewed.any():
        return None
    labels = sessions["label"].to_numpy()[reviewed]
    flagged = scores[reviewed] >= threshold
    result: dict[str, object] = {
        "sessions": int(reviewed.sum()),
        "bot_sessions": int(labels.sum()),
        "recall_at_threshold": _share(flagged[labels == 1]),
        "flag_rate_human": _share(flagged[labels == 0]),
        "precision_at_threshold": _share(labels[flagged] == 1),
    }
    if len(np.unique(labels)) == 2:
        result.update(ranking_metrics(labels, scores[reviewed]))
    return result


def evaluate_levels(test: pd.DataFrame, booster: xgb.Booster, meta: ModelMeta, cfg: DictConfig) -> tuple[dict, dict]:
    """Compute metrics.json content and evaluation details for the test rows."""
    target_fpr = float(cfg.evaluate.target_fpr)
    crawler_ids = set(test.loc[test["declared_crawler"] & (test["label"] == 1), "session_id"])
    masked = mask_user_agents(test, crawler_ids, list(cfg.evaluate.browser_user_agents))
    masked = masked[masked["session_id"].isin(crawler_ids)]

    sessions, masked_sessions = last_rows(test), last_rows(masked)
    clicks, basis = click_rows(test)
    masked_clicks = masked.loc[masked.index.intersection(clicks.index)]

    per_level = {}
    for level, rows, masked_rows in (("session", sessions, masked_sessions), ("click", clicks, masked_clicks)):
        scored = scorer_outputs(rows, booster, meta, cfg, masked=False)
        masked_scored = scorer_outputs(masked_rows, booster, meta, cfg, masked=True)
        per_level[level] = level_metrics(rows, masked_rows, scored, masked_scored, target_fpr)
    metrics = {scorer: {level: per_level[level][scorer] for level in per_level} for scorer in SCORERS}

    session_scores = predict_proba(booster, feature_matrix(sessions, meta.feature_names))
    flagged = session_scores >= meta.threshold
    labels = sessions["label"].to_numpy()
    presumed_human = (sessions["label_source"] == "none").to_numpy()
    details = {
        "click_basis": basis,
        "test_sessions": int(len(sessions)),
        "test_bot_sessions": int(labels.sum()),
        "test_masked_crawler_sessions": int(len(masked_sessions)),
        "test_click_rows": int(len(clicks)),
        "threshold": meta.threshold,
        "recall_at_threshold": _share(flagged[labels == 1]),
        "flag_rate_human": _share(flagged[labels == 0]),
        "flag_rate_presumed_human": _share(flagged[presumed_human]),
        "reviewed": reviewed_metrics(sessions, session_scores, meta.threshold),
    }
    return metrics, details


def flat_metrics(levels: dict[str, dict[str, float]]) -> dict[str, float]:
    """Flatten {"session": {...}, "click": {...}} into MLflow names like session_pr_auc."""
    return {f"{level}_{name}": value for level, values in levels.items() for name, value in values.items() if np.isfinite(value)}


def write_plots(test: pd.DataFrame, booster: xgb.Booster, meta: ModelMeta, plots_dir: Path, cfg: DictConfig) -> list[Path]:
    """Write the session-level curves, the confusion matrix and feature importance."""
    sessions = last_rows(test)
    labels = sessions["label"].to_numpy()
    scored = scorer_outputs(sessions, booster, meta, cfg, masked=False)
    written = plots.write_curves(plots_dir, labels, scored) if len(np.unique(labels)) == 2 else []
    written += plots.write_confusion(plots_dir, labels, scored[MODEL] >= meta.threshold)
    gain = booster.get_score(importance_type="total_gain")
    written += plots.write_importance(plots_dir, {name: float(gain.get(name, 0.0)) for name in meta.feature_names})
    return written


def log_runs(metrics: dict, details: dict, meta: ModelMeta, plot_files: list[Path], cfg: DictConfig) -> None:
    """Log the model's metrics into its training run and each baseline as a run of its own."""
    experiment_id = configure_tracking(cfg)
    client = MlflowClient()
    for name, value in flat_metrics(metrics[MODEL]).items():
        client.log_metric(meta.run_id, name, value)
    for key in ("recall_at_threshold", "flag_rate_human", "flag_rate_presumed_human"):
        if details[key] is not None:
            client.log_metric(meta.run_id, key, details[key])
    for name, value in (details["reviewed"] or {}).items():
        if isinstance(value, float) and np.isfinite(value):
            client.log_metric(meta.run_id, f"reviewed_{name}", value)
    for family, value in metrics["families"].items():
        client.log_metric(meta.run_id, f"holdout_flag_rate_{family}", value)
    for path in plot_files:
        client.log_artifact(meta.run_id, str(path), artifact_path="plots")

    tags = {"git_commit": meta.git_commit, "data_version": meta.data_version, "compared_with_run": meta.run_id}
    for scorer, run_name in BASELINE_RUN_NAMES.items():
        # The client API, not mlflow.start_run: under `mlflow run`, MLFLOW_RUN_ID would make
        # start_run resume the model's run instead of opening a baseline run.
        run = client.create_run(experiment_id, run_name=run_name, tags={"model_type": scorer, **tags})
        run_id = run.info.run_id
        for key, value in {"rule": scorer, "rate_feature": cfg.evaluate.rate_rule_feature, "target_fpr": cfg.evaluate.target_fpr}.items():
            client.log_param(run_id, key, value)
        for key, value in flat_metrics(metrics[scorer]).items():
            client.log_metric(run_id, key, value)
        client.set_terminated(run_id)


def evaluate(
    features: Path, labels: Path, model_dir: Path, metrics_path: Path, evaluation_path: Path, plots_dir: Path, cfg: DictConfig
) -> dict:
    """Run the evaluate stage end to end and return the metrics."""
    booster, meta = load_model(model_dir)
    test, population = primary_population(load_dataset(features, labels, cfg).part(TEST))
    if test.empty or test["label"].nunique() < 2:
        raise ValueError(
            f"the test split has {len(test)} rows and labels {sorted(test['label'].unique())}; "
            "it needs bot and presumed-human sessions. Use more or longer logs."
        )

    metrics, details = evaluate_levels(test, booster, meta, cfg)
    details["population"] = population
    details["holdout"] = family_recall(booster, meta, cfg)
    metrics["families"] = {
        family: values["flag_rate_at_target_human_fpr"] for family, values in details["holdout"]["families"].items()
    }
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    plot_files = write_plots(test, booster, meta, plots_dir, cfg)
    log_runs(metrics, details, meta, plot_files, cfg)

    masked_key = metric_names(float(cfg.evaluate.target_fpr))[1]
    decision = register(meta.model_uri, meta.run_id, decide(metrics, last_rows(test), masked_key, cfg), cfg)
    details["promotion"] = asdict(decision)
    evaluation_path.write_text(json.dumps(details, indent=2), encoding="utf-8")
    logger.info("session metrics: %s", {scorer: metrics[scorer]["session"] for scorer in SCORERS})
    return metrics


def main(
    features: Path = typer.Argument(..., help="Feature table parquet (input)."),
    labels: Path = typer.Argument(..., help="Session labels parquet (input)."),
    model_dir: Path = typer.Argument(..., help="Folder with the trained model (input)."),
    metrics: Path = typer.Argument(..., help="metrics.json for DVC (output)."),
    evaluation: Path = typer.Argument(..., help="Evaluation details and promotion decision, JSON (output)."),
    plots_dir: Path = typer.Argument(..., help="Folder for plot data and PNGs (output)."),
    params: Path = typer.Option(Path("params.yaml"), help="Composed params file."),
) -> None:
    """Evaluate the model against the baselines and register it behind the promotion gate."""
    configure_logging()
    evaluate(features, labels, model_dir, metrics, evaluation, plots_dir, load_params(params))


if __name__ == "__main__":
    typer.run(main)
