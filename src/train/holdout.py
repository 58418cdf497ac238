"""Per-family recall on a simulation with a seed never used in training.

The held-out traffic goes through the pipeline's own collect, preprocess, labels and
feature code. Recall per family is reported at two thresholds: the model's operating
threshold, and the threshold that flags `evaluate.target_fpr` of simulated human sessions.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pandas as pd
import xgboost as xgb
from omegaconf import DictConfig

from src.data.collect import collect_files
from src.data.labels import build_labels
from src.data.preprocess import preprocess
from src.data.schema import REVIEW_COLUMNS
from src.data.simulate import FAMILY_POLICY, simulate
from src.data.sources import discover_log_files
from src.features.featurize import featurize_events
from src.features.session_features import FeatureSettings
from src.train.metrics import recall_at_threshold, threshold_at_fpr
from src.train.model_io import ModelMeta, feature_matrix, predict_proba

logger = logging.getLogger(__name__)


def human_families() -> set[str]:
    """Return the simulator families that are people (neither bots nor automation)."""
    return {name for name, (is_bot, automated) in FAMILY_POLICY.items() if not is_bot and not automated}


def holdout_sessions(cfg: DictConfig, workdir: Path) -> pd.DataFrame:
    """Simulate held-out traffic and return each session's last feature row with its family."""
    seed = int(cfg.evaluate.holdout_seed)
    if seed == int(cfg.simulate.seed):
        raise ValueError(f"evaluate.holdout_seed {seed} equals simulate.seed; pick a seed never used in training")

    logs = workdir / "logs"
    simulate(cfg, logs, seed=seed, scale=float(cfg.evaluate.holdout_scale))
    files = discover_log_files(logs, list(cfg.data.log_globs), list(cfg.data.jsonl_globs))
    collect_files(files, workdir / "raw.parquet", workdir / "quarantine.jsonl", workdir / "collect.json", cfg)
    preprocess(workdir / "raw.parquet", workdir / "events.parquet", workdir / "preprocess.json", cfg)
    reviews = workdir / "reviews.csv"
    reviews.write_text(",".join(REVIEW_COLUMNS) + "\n", encoding="utf-8")
    ground_truth = logs / str(cfg.simulate.ground_truth_file)
    build_labels(workdir / "events.parquet", reviews, ground_truth, workdir / "labels.parquet", workdir / "labels.json", cfg)

    events = pd.read_parquet(workdir / "events.parquet")
    features = featurize_events(events, FeatureSettings.from_config(cfg.features))
    last = features.groupby("session_id", sort=False).tail(1)
    labels = pd.read_parquet(workdir / "labels.parquet")[["session_id", "family", "label"]]
    return last.merge(labels, on="session_id", validate="one_to_one")


def family_recall(booster: xgb.Booster, meta: ModelMeta, cfg: DictConfig) -> dict[str, object]:
    """Return per-family flag rates on held-out simulated sessions, at both thresholds."""
    with tempfile.TemporaryDirectory(prefix="botclick-holdout-") as tmp:
        sessions = holdout_sessions(cfg, Path(tmp))
    scores = predict_proba(booster, feature_matrix(sessions, meta.feature_names))
    is_human = sessions["family"].isin(human_families()).to_numpy()
    sim_threshold = threshold_at_fpr(scores[is_human], float(cfg.evaluate.target_fpr))

    result: dict[str, object] = {
        "seed": int(cfg.evaluate.holdout_seed),
        "threshold_at_target_human_fpr": sim_threshold,
        "operating_threshold": meta.threshold,
        "families": {},
    }
    for family, group in sessions.groupby("family", sort=True):
        family_scores = scores[(sessions["family"] == family).to_numpy()]
        result["families"][family] = {
            "sessions": int(len(group)),
            "is_bot": int(FAMILY_POLICY.get(family, (0, 0))[0]),
            "flag_rate_at_target_human_fpr": recall_at_threshold(family_scores, sim_threshold),
            "flag_rate_at_operating_threshold": recall_at_threshold(family_scores, meta.threshold),
        }
    logger.info("held-out simulation (seed %s): %s", result["seed"], {f: round(v["flag_rate_at_target_human_fpr"], 3) for f, v in result["families"].items()})
    return result
