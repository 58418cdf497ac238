"""Assemble the training table: features joined with session labels and the time split."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from src.features.masking import borrow_user_agents
from src.features.sessions import epoch_seconds
from src.train.split import DROPPED, assign_split

logger = logging.getLogger(__name__)

LABEL_JOIN_COLUMNS = ["session_id", "label", "label_source", "declared_crawler", "family"]


@dataclass
class Dataset:
    """Request-level rows with labels and split, plus the per-session table."""

    rows: pd.DataFrame
    sessions: pd.DataFrame
    feature_names: list[str]

    def part(self, name: str) -> pd.DataFrame:
        """Return the rows of one split ("train", "valid" or "test")."""
        return self.rows[self.rows["split"] == name]


def _read(path: Path, stage: str) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found. Run the {stage} stage first (`dvc repro`).")
    return pd.read_parquet(path)


def load_dataset(features_path: Path, labels_path: Path, cfg: DictConfig) -> Dataset:
    """Join features with labels and assign each session to train, valid, test or gap."""
    features = _read(features_path, "featurize")
    sessions = _read(labels_path, "labels")
    if features.empty:
        raise ValueError(f"{features_path} has no rows: the input logs produced no parsed requests")

    sessions = sessions.assign(start_s=epoch_seconds(sessions["session_start"]))
    sessions["split"] = assign_split(
        sessions, float(cfg.train.train_fraction), float(cfg.train.valid_fraction), float(cfg.train.gap_s)
    )
    rows = features.merge(sessions[LABEL_JOIN_COLUMNS + ["split"]], on="session_id", how="left", validate="many_to_one")
    unlabelled = rows["label"].isna()
    if unlabelled.any():
        raise ValueError(
            f"{int(unlabelled.sum())} feature rows have no session label, e.g. session "
            f"{rows.loc[unlabelled, 'session_id'].iloc[0]}; re-run the labels stage on the same events"
        )

    rows["label"] = rows["label"].astype(int)
    rows = rows[rows["split"] != DROPPED].reset_index(drop=True)
    return Dataset(rows=rows, sessions=sessions, feature_names=list(cfg.features.names))


def session_weights(rows: pd.DataFrame) -> np.ndarray:
    """Weight each row by 1 / (rows of its session), so every session counts once."""
    counts = rows.groupby("session_id")["session_id"].transform("size")
    return (1.0 / counts).to_numpy(dtype=np.float64)


def last_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Return each session's last request row: its features with the whole session seen."""
    return rows.groupby("session_id", sort=False).tail(1)


def mask_training_crawlers(rows: pd.DataFrame, cfg: DictConfig, seed: int) -> pd.DataFrame:
    """Give a share of declared-crawler bot sessions the user agent of a presumed-human session.

    This augmentation teaches the model that a browser user agent does not make a session
    human. Donors are browser-like presumed-human training sessions (`ua_mozilla_prefix`).
    """
    crawlers = rows["declared_crawler"] & (rows["label"] == 1)
    crawler_sessions = np.sort(rows.loc[crawlers, "session_id"].unique())
    donors = last_rows(rows[(rows["label_source"] == "none") & (rows["ua_mozilla_prefix"] == 1.0)])
    if len(crawler_sessions) == 0 or donors.empty:
        logger.warning("no user-agent masking: %d crawler sessions, %d donor sessions", len(crawler_sessions), len(donors))
        return rows

    rng = np.random.default_rng(seed)
    chosen = rng.random(len(crawler_sessions)) < float(cfg.train.mask_ua_fraction)
    masked_ids = set(crawler_sessions[chosen])
    logger.info("masked the user agent of %d of %d declared-crawler training sessions", len(masked_ids), len(crawler_sessions))
    return borrow_user_agents(rows, masked_ids, donors, rng)


def primary_population(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Return the rows that headline metrics and the threshold use, and their name.

    When real logs are mixed with simulated traffic, the real sessions are the ones that
    count: simulated sessions are scored per family on a held-out simulation instead.
    """
    simulated = rows["label_source"] == "simulator"
    if simulated.any() and not simulated.all():
        return rows[~simulated], "real"
    return rows, "simulated" if simulated.all() else "real"
