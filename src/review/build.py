"""Build or refresh the review queue from score tables and the click store."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig

from src.review.evidence import QueueSummary, items_from_clicks, items_from_scores
from src.review.queue import ReviewQueue
from src.review.settings import ReviewSettings
from src.review.sources import ModelExplainer, events_from_log_files, read_click_store, read_events, read_scores

logger = logging.getLogger(__name__)

# Explanation and next step for sessions left out of the queue, per reason.
DROP_HINTS = {
    "no_events": "their requests are not in the events file; pass the scored logs with --logs",
    "invalid_bot_probability": "bot_probability is not a number from 0 to 1; rewrite the table with `botclick score`",
}


def queue_from_scores(
    cfg: DictConfig, settings: ReviewSettings, scores_path: Path, logs: Sequence[Path] = (), model_version: str | None = None
) -> QueueSummary:
    """Queue the picked sessions of a score table; evidence comes from `logs` when given, else paths.events.

    `model_version` is the version that wrote the table. When neither it nor a
    `model_version` column is there, the current champion's version is recorded.
    """
    scores = read_scores(scores_path)
    if logs:
        events = events_from_log_files(logs, cfg)
    else:
        events = read_events(Path(str(cfg.paths.events)), scores["session_id"].tolist())
    version = model_version or ("" if "model_version" in scores.columns else _champion_or_unknown(cfg))
    items, summary = items_from_scores(scores, events, settings, version, origin=f"scores:{scores_path.name}")
    ReviewQueue(settings.queue_path).add(items)
    _log_summary("score table " + str(scores_path), summary)
    return summary


def queue_from_click_store(cfg: DictConfig, settings: ReviewSettings, since: datetime | None = None) -> QueueSummary:
    """Queue the picked sessions of the scoring service's click store, with reasons recomputed per model version."""
    clicks = read_click_store(cfg, since)
    items, summary = items_from_clicks(clicks, settings, "click_store:" + str(cfg.serve.store.table), ModelExplainer(cfg))
    ReviewQueue(settings.queue_path).add(items)
    _log_summary("click store", summary)
    return summary


def _champion_or_unknown(cfg: DictConfig) -> str:
    from src.serve.champion import ChampionNotFoundError, RegistryUnavailableError, champion_version

    try:
        return champion_version(cfg)
    except (ChampionNotFoundError, RegistryUnavailableError) as err:
        logger.warning("model version of the score table unknown (%s); pass --model-version to record it", err)
        return "unknown"


def _log_summary(source: str, summary: QueueSummary) -> None:
    logger.info("review queue from %s: %s", source, asdict(summary))
    for reason, count in summary.dropped.items():
        logger.warning("%d sessions of the %s were not queued: %s", count, source, DROP_HINTS.get(reason, reason))
