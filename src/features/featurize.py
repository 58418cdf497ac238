"""Featurize stage: point-in-time features for every request of every session.

CLI (mirrors dvc.yaml): python -m src.features.featurize EVENTS FEATURES [--params params.yaml]
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import typer
from omegaconf import DictConfig

from src.config import load_params
from src.logs import configure_logging
from src.features.session_features import (
    FeatureSettings,
    RequestEvent,
    SessionFeatureState,
    check_feature_names,
)
from src.features.sessions import epoch_seconds

logger = logging.getLogger(__name__)

# Columns copied from the events next to the features, to join labels and split by time.
ID_COLUMNS: list[str] = ["session_id", "client_key", "ts", "kind", "source"]


def request_events(events: pd.DataFrame) -> list[RequestEvent]:
    """Convert event rows to `RequestEvent`s, in row order."""
    status = events["status"].astype("object").where(events["status"].notna(), None)
    size = events["bytes"].astype("object").where(events["bytes"].notna(), None)
    columns = zip(
        epoch_seconds(events["ts"]).tolist(),
        events["method"].tolist(),
        events["path"].tolist(),
        events["protocol"].tolist(),
        status.tolist(),
        size.tolist(),
        events["referrer"].tolist(),
        events["user_agent"].tolist(),
        events["kind"].tolist(),
        strict=True,
    )
    return [
        RequestEvent(ts, m, p, proto, None if st is None else int(st), None if b is None else int(b), r, ua, k)
        for ts, m, p, proto, st, b, r, ua, k in columns
    ]


def featurize_events(events: pd.DataFrame, settings: FeatureSettings) -> pd.DataFrame:
    """Return one feature row per event, aligned with `events`' index.

    Within a session, events are taken in their row order, so `events` must be time-sorted.
    """
    check_feature_names(settings)
    order = np.argsort(events["session_id"].to_numpy(), kind="stable")
    ordered_sessions = events["session_id"].to_numpy()[order]
    requests = request_events(events.iloc[order])

    ordered_values = np.empty((len(requests), len(settings.names)), dtype=np.float64)
    state: SessionFeatureState | None = None
    previous = None
    for position, (current, request) in enumerate(zip(ordered_sessions, requests, strict=True)):
        if current != previous:
            state = SessionFeatureState(settings)
            previous = current
        assert state is not None
        ordered_values[position] = state.update(request)

    values = np.empty_like(ordered_values)
    values[order] = ordered_values
    features = pd.DataFrame(values, columns=list(settings.names), index=events.index)
    return pd.concat([events[ID_COLUMNS], features], axis=1)


def featurize(events_path: Path, features_path: Path, cfg: DictConfig) -> pd.DataFrame:
    """Read preprocessed events, compute features and write them as parquet."""
    if not events_path.is_file():
        raise FileNotFoundError(f"events file not found: {events_path}. Run the preprocess stage first.")
    events = pd.read_parquet(events_path)
    features = featurize_events(events, FeatureSettings.from_config(cfg.features))

    features_path.parent.mkdir(parents=True, exist_ok=True)
    features.to_parquet(features_path, index=False)
    logger.info("wrote %d feature rows for %d sessions to %s", len(features), features["session_id"].nunique(), features_path)
    return features


def main(
    events: Path = typer.Argument(..., help="Preprocessed events parquet (input)."),
    features: Path = typer.Argument(..., help="Feature table parquet (output)."),
    params: Path = typer.Option(Path("params.yaml"), help="Composed params file."),
) -> None:
    """Compute point-in-time session features for every request."""
    configure_logging()
    featurize(events, features, load_params(params))


if __name__ == "__main__":
    typer.run(main)
