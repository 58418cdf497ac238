"""The reference window of a drift check: sessions the champion was trained on.

The training run logs a sample of its input sessions as the MLflow artifact
`monitor.reference.artifact_path` (`log_reference_sample`). Runs logged before that call
existed have no such artifact, and then the reference is rebuilt from the local
`paths.features` and `paths.session_labels` files. Those match the champion only while
no later pipeline run has replaced them, so the summary records which source was used.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path, PurePosixPath
from typing import Sequence

import mlflow
import pandas as pd
import xgboost as xgb
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig

from src.monitor.sessions import LAST_SEEN, SCORE, SessionWindow, add_user_agent_families, session_scores
from src.serve.champion import LoadedModel
from src.train.dataset import Dataset, last_rows, load_dataset, primary_population
from src.train.tracking import data_version

logger = logging.getLogger(__name__)

ID_COLUMNS = ["session_id", "client_key", LAST_SEEN, "source", "label", "label_source"]


class ReferenceNotFoundError(LookupError):
    """Raised when neither the champion's run nor the local pipeline files give a reference."""


def reference_frame(data: Dataset, booster: xgb.Booster, feature_names: Sequence[str], cfg: DictConfig) -> pd.DataFrame:
    """Return a sample of the model's input sessions at their last request, with its scores.

    The sample is drawn from every split, not the train split alone: the time-based split
    gives the train split only the earliest part of the logs, whose hour-of-day and
    traffic mix differ from a whole window even when nothing changed. When real logs were
    mixed with simulated traffic, only the real sessions are kept, because the current
    window contains real traffic alone. At most `monitor.reference.max_sessions` sessions are drawn with seed `seed`. The user
    agent families come from `paths.events`, because the feature table has no user agent.
    """
    rows, population = primary_population(last_rows(data.rows))
    logger.info("reference sample drawn from the %s training sessions", population)
    limit = int(cfg.monitor.reference.max_sessions)
    if len(rows) > limit:
        rows = rows.sample(n=limit, random_state=int(cfg.seed))
    columns = list(dict.fromkeys([*ID_COLUMNS, *data.feature_names]))
    frame = rows[columns].sort_values([LAST_SEEN, "session_id"], kind="stable").reset_index(drop=True)

    frame = add_user_agent_families(frame, Path(str(cfg.paths.events)))
    frame[SCORE] = session_scores(frame, booster, feature_names)
    return frame


def log_reference_sample(data: Dataset, booster: xgb.Booster, cfg: DictConfig, run_id: str | None = None) -> pd.DataFrame:
    """Log the reference sample of a training run as a parquet artifact and return it.

    Call it inside the training run (`with mlflow.start_run()`), or pass `run_id` to add
    the artifact to a finished run.
    """
    frame = reference_frame(data, booster, data.feature_names, cfg)
    artifact = PurePosixPath(str(cfg.monitor.reference.artifact_path))
    folder = None if str(artifact.parent) == "." else str(artifact.parent)
    with tempfile.TemporaryDirectory(prefix="botclick-reference-") as tmp:
        path = Path(tmp) / artifact.name
        frame.to_parquet(path, index=False)
        if run_id is None:
            mlflow.log_artifact(str(path), artifact_path=folder)
        else:
            MlflowClient().log_artifact(run_id, str(path), artifact_path=folder)
    logger.info("logged a reference sample of %d training sessions as %s", len(frame), artifact)
    return frame


def has_reference_sample(run_id: str, cfg: DictConfig) -> bool:
    """Tell whether the run has the reference sample artifact."""
    artifact = PurePosixPath(str(cfg.monitor.reference.artifact_path))
    folder = "" if str(artifact.parent) == "." else str(artifact.parent)
    listed = MlflowClient().list_artifacts(run_id, folder or None)
    return any(PurePosixPath(item.path).name == artifact.name for item in listed)


def load_reference(model: LoadedModel, cfg: DictConfig) -> SessionWindow:
    """Return the champion's reference window, scored by the champion.

    Reads the artifact of the champion's run, else falls back to the local pipeline files.
    Raises ReferenceNotFoundError when neither exists.
    """
    if has_reference_sample(model.meta.run_id, cfg):
        path = mlflow.artifacts.download_artifacts(run_id=model.meta.run_id, artifact_path=str(cfg.monitor.reference.artifact_path))
        frame = pd.read_parquet(path)
        window = SessionWindow("reference", frame, "champion_run", notes=[f"training sample of run {model.meta.run_id}"])
    else:
        window = reference_from_local_files(model, cfg)

    window.sessions[SCORE] = session_scores(window.sessions, model.booster, model.meta.feature_names)
    return window


def reference_from_local_files(model: LoadedModel, cfg: DictConfig) -> SessionWindow:
    """Rebuild the reference from `paths.features` and `paths.session_labels`.

    The window notes record whether the files have the champion's data version.
    """
    features, labels = Path(str(cfg.paths.features)), Path(str(cfg.paths.session_labels))
    if not features.is_file() or not labels.is_file():
        raise ReferenceNotFoundError(
            f"the champion's run {model.meta.run_id} has no {cfg.monitor.reference.artifact_path} artifact and the "
            f"local pipeline files {features} and {labels} are missing. Pass --reference-logs with the logs the "
            "champion was trained on, or run the pipeline again (`make run`)."
        )

    data = load_dataset(features, labels, cfg)
    frame = reference_frame(data, model.booster, model.meta.feature_names, cfg)
    local_version = data_version([features, labels])["data_version"]
    notes = [f"rebuilt from {features} and {labels}, because run {model.meta.run_id} has no reference artifact"]
    if local_version != model.meta.data_version:
        notes.append(
            f"these files have data version {local_version}, not the champion's {model.meta.data_version or 'unknown'}, "
            "so the reference may differ from the champion's training data"
        )
    for note in notes:
        logger.warning("reference window: %s", note)
    return SessionWindow("reference", frame, "local_files", [str(features), str(labels)], notes=notes)
