"""Batch scoring (`botclick score`): one row per client session of the given logs.

The logs go through the pipeline's own collect, preprocess and feature code, and each
session is scored by the champion with everything seen up to its last request.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Sequence

import pandas as pd
from omegaconf import DictConfig

from src.data.collect import collect_files
from src.data.preprocess import preprocess
from src.data.sources import describe_files
from src.features.explain import format_reasons, top_reasons
from src.features.featurize import featurize_events
from src.features.session_features import FeatureSettings
from src.serve.champion import LoadedModel
from src.serve.model_watcher import decision_thresholds
from src.serve.scorer import decide
from src.serve.settings import ALLOW, ServeSettings
from src.train.model_io import feature_matrix, predict_proba

logger = logging.getLogger(__name__)

SCORE_COLUMNS = [
    "client_id", "session_id", "session_start", "session_end", "n_requests",
    "bot_probability", "decision", "top_features",
]


def events_from_logs(files: Sequence[Path], cfg: DictConfig, workdir: Path) -> pd.DataFrame:
    """Collect and preprocess log files into session-tagged events, in `workdir`."""
    log_files = describe_files(list(files), list(cfg.data.jsonl_globs))
    collect_files(log_files, workdir / "raw.parquet", workdir / "quarantine.jsonl", workdir / "collect.json", cfg)
    preprocess(workdir / "raw.parquet", workdir / "events.parquet", workdir / "preprocess.json", cfg)
    return pd.read_parquet(workdir / "events.parquet")


def score_sessions(events: pd.DataFrame, model: LoadedModel, cfg: DictConfig) -> pd.DataFrame:
    """Score each session at its last request and explain the score.

    Decisions use the service's thresholds (serve.flag_threshold, else the model's, and
    serve.block_threshold), so a session gets the decision its last click got in the service.
    """
    features = featurize_events(events, FeatureSettings.from_config(cfg.features))
    last = features.groupby("session_id", sort=False).tail(1)
    matrix = feature_matrix(last, model.meta.feature_names)
    probability = predict_proba(model.booster, matrix)
    flag_threshold, block_threshold = decision_thresholds(model, ServeSettings.from_config(cfg))
    reasons = top_reasons(
        model.booster, matrix, model.meta.feature_names, dict(cfg.features.descriptions), int(cfg.serve.top_reasons),
        bool(cfg.serve.approximate_reasons),
    )

    spans = events.groupby("session_id", sort=False).agg(
        client_id=("client_id", "first"), session_start=("ts", "min"), session_end=("ts", "max"), n_requests=("ts", "size")
    )
    scored = pd.DataFrame(
        {
            "session_id": last["session_id"].to_numpy(),
            "bot_probability": probability,
            "decision": [decide(float(p), flag_threshold, block_threshold) for p in probability],
            "top_features": [format_reasons(r) for r in reasons],
        }
    )
    table = spans.reset_index().merge(scored, on="session_id", validate="one_to_one")
    return table[SCORE_COLUMNS].sort_values(["session_start", "session_id"], kind="stable").reset_index(drop=True)


def score_logs(files: Sequence[Path], model: LoadedModel, cfg: DictConfig) -> pd.DataFrame:
    """Score every client session in `files` with `model`."""
    with tempfile.TemporaryDirectory(prefix="botclick-score-") as tmp:
        events = events_from_logs(files, cfg, Path(tmp))
    if events.empty:
        logger.warning("no parsed requests in %s; writing an empty score table", [str(f) for f in files])
        return pd.DataFrame(columns=SCORE_COLUMNS)
    table = score_sessions(events, model, cfg)
    logger.info("scored %d sessions with %s version %s: %d flagged or blocked", len(table), cfg.mlflow.registered_model, model.version, int((table["decision"] != ALLOW).sum()))
    return table
