"""Read the inputs of a queue build: score tables, events and the click store."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig
from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from src.features.explain import top_reasons
from src.features.featurize import featurize_events
from src.features.request_kind import RequestKindClassifier
from src.features.session_features import FeatureSettings
from src.features.sessions import client_key
from src.review.evidence import EVIDENCE_COLUMNS, format_reason
from src.serve.champion import LoadedModel, load_version
from src.serve.model_watcher import RULES_VERSION
from src.train.model_io import feature_matrix

logger = logging.getLogger(__name__)

def read_scores(path: Path) -> pd.DataFrame:
    """Read a score table written by `botclick score`, with session ids as text."""
    if not path.is_file():
        raise FileNotFoundError(f"score table not found: {path}. Write it with `botclick score LOGS --out {path}`")
    return pd.read_csv(path, dtype={"session_id": str, "decision": str, "top_features": str, "model_version": str}, keep_default_na=False)


def read_events(path: Path, session_ids: Sequence[str]) -> pd.DataFrame:
    """Read the evidence columns of the given sessions from a sessionized events parquet."""
    if not path.is_file():
        raise FileNotFoundError(
            f"events file not found: {path}. Run the pipeline (`dvc repro`) first, or pass the scored logs with --logs"
        )
    if not session_ids:
        return pd.DataFrame(columns=EVIDENCE_COLUMNS)
    return pd.read_parquet(path, columns=EVIDENCE_COLUMNS, filters=[("session_id", "in", list(session_ids))])


def events_from_log_files(files: Sequence[Path], cfg: DictConfig) -> pd.DataFrame:
    """Collect and preprocess log files in a temporary folder and return their sessionized events."""
    from src.serve.batch_score import events_from_logs

    with tempfile.TemporaryDirectory(prefix="botclick-review-") as tmp:
        return events_from_logs(list(files), cfg, Path(tmp))[EVIDENCE_COLUMNS]


def read_click_store(cfg: DictConfig, since: datetime | None = None) -> pd.DataFrame:
    """Read the scoring service's click store (serve.store) as a frame with a request `kind` column.

    Raises FileNotFoundError when the store has no click table yet.
    """
    from src.review.evidence import clicks_frame
    from src.serve.click_store import ClickStore, redact_url
    from src.serve.settings import StoreSettings

    settings = StoreSettings.from_config(cfg.serve.store)
    store = ClickStore(settings.url, settings.table, settings.sqlite_pragmas)
    try:
        if not inspect(store.engine).has_table(settings.table):
            raise FileNotFoundError(
                f"click store {redact_url(settings.url)} has no table {settings.table!r}; run `botclick serve` to create it"
            )
        frame = clicks_frame(store.iter_rows(since))
    except SQLAlchemyError as err:
        raise RuntimeError(f"cannot read the click store {redact_url(settings.url)}: {err}") from err
    finally:
        store.dispose()

    classifier = RequestKindClassifier.from_config(cfg.data.preprocess)
    frame["kind"] = [classifier.classify(path) for path in frame["path"]]
    logger.info("read %d clicks of %d sessions from the click store", len(frame), frame["session_id"].nunique())
    return frame


class ModelExplainer:
    """Explain stored clicks with the model version that scored them, loading each version once."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.feature_settings = FeatureSettings.from_config(cfg.features)
        self.descriptions = {str(k): str(v) for k, v in cfg.features.descriptions.items()}
        self.count = int(cfg.evaluate.top_reasons)
        self._models: dict[str, LoadedModel | None] = {}

    def _model(self, version: str) -> LoadedModel | None:
        if version not in self._models:
            try:
                self._models[version] = load_version(self.cfg, version)
            except (MlflowException, OSError) as err:
                logger.warning("cannot load model version %s to explain stored clicks, so they get no reasons: %s", version, err)
                self._models[version] = None
        return self._models[version]

    def __call__(self, session: pd.DataFrame, click: Mapping[str, Any]) -> list[str]:
        """Return the reason lines of `click`, recomputed from the session's clicks up to it."""
        version = str(click["model_version"])
        if version == RULES_VERSION:
            return ["scored by the service's rule fallback (no model was loaded)"]
        model = self._model(version)
        if model is None:
            return []
        events = session.assign(client_key=[client_key(c, u) for c, u in zip(session["client_id"], session["user_agent"], strict=True)])
        events = events.assign(source="click_store", protocol=events.get("protocol", ""), bytes=events.get("bytes"))
        features = featurize_events(events.reset_index(drop=True), self.feature_settings)
        position = int((events["ts"] <= click["ts"]).sum()) - 1
        row = feature_matrix(features.iloc[[max(position, 0)]], model.meta.feature_names)
        reasons = top_reasons(model.booster, row, model.meta.feature_names, self.descriptions, self.count)
        return [format_reason(reason) for reason in reasons[0]]
