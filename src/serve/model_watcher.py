"""Keep the champion model loaded and swap in a new version when the alias moves.

Registry calls and model loads run in worker threads, so requests keep being scored
meanwhile. A swap replaces one reference, so each request gets the old or the new model
and never a mix. If the registry cannot be read, the loaded model stays in use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from omegaconf import DictConfig

from src.features.explain import top_reasons
from src.serve.champion import (
    ChampionNotFoundError,
    LoadedModel,
    champion_version,
    load_version,
)
from src.serve.metrics import ServiceMetrics
from src.serve.settings import ServeSettings
from src.train.model_io import predict_proba_rows

logger = logging.getLogger(__name__)

RULES_VERSION = "rules"


@dataclass(frozen=True)
class ActiveModel:
    """A loaded model with its column order and decision thresholds resolved."""

    loaded: LoadedModel
    # Position of each model feature in the feature vector of `FeatureSettings.names`.
    columns: np.ndarray
    flag_threshold: float
    block_threshold: float
    loaded_at: float

    @property
    def version(self) -> str:
        """Registered version number, as text."""
        return self.loaded.version


@dataclass
class WatcherStatus:
    """Outcome of the latest registry poll, for GET /v1/model."""

    last_poll_at: float | None = None
    last_error: str | None = None
    champion_found: bool | None = None
    polls: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def prepare_model(loaded: LoadedModel, feature_names: Sequence[str], settings: ServeSettings) -> ActiveModel:
    """Resolve the model's columns and thresholds; raises ValueError for unknown features."""
    unknown = [name for name in loaded.meta.feature_names if name not in feature_names]
    if unknown:
        raise ValueError(
            f"model version {loaded.version} needs features {unknown} that features.names does not list; "
            "serve it with the feature code it was trained with"
        )
    loaded.booster.set_param({"nthread": settings.predict_threads})
    columns = np.array([feature_names.index(name) for name in loaded.meta.feature_names], dtype=np.intp)
    flag, block = decision_thresholds(loaded, settings)
    return ActiveModel(loaded, columns, flag, block, time.time())


def decision_thresholds(loaded: LoadedModel, settings: ServeSettings) -> tuple[float, float]:
    """Return the flag and block thresholds: serve.flag_threshold, else the model's own, and serve.block_threshold."""
    flag = settings.flag_threshold if settings.flag_threshold is not None else float(loaded.meta.threshold)
    block = settings.block_threshold
    if block < flag:
        logger.warning(
            "serve.block_threshold %.4f is below the flag threshold %.4f of version %s; blocking only above %.4f",
            block, flag, loaded.version, flag,
        )
        block = flag
    return flag, block


def warm_up(model: ActiveModel, settings: ServeSettings) -> None:
    """Run one prediction and one explanation, so the first request does not pay for setup."""
    row = np.zeros((1, len(model.columns)), dtype=np.float64)
    _, data = predict_proba_rows(model.loaded.booster, row)
    names = model.loaded.meta.feature_names
    top_reasons(model.loaded.booster, row, names, {}, settings.top_reasons, settings.approximate_reasons, data)


class ModelWatcher:
    """Poller of `models:/<name>@<alias>` that keeps the model in use (`current`, None for rules)."""

    def __init__(
        self, cfg: DictConfig, settings: ServeSettings, feature_names: Sequence[str], metrics: ServiceMetrics
    ) -> None:
        self._cfg = cfg
        self._settings = settings
        self._feature_names = list(feature_names)
        self._metrics = metrics
        self._lock = asyncio.Lock()
        self.current: ActiveModel | None = None
        self.status = WatcherStatus()
        metrics.show_model_version(RULES_VERSION)

    @property
    def version(self) -> str:
        """Version in use, or "rules" while no model is loaded."""
        model = self.current
        return RULES_VERSION if model is None else model.version

    async def refresh(self) -> str:
        """Poll the alias once and load a new version if it moved; returns what happened.

        The result is "unchanged", "swapped", "no_champion", "registry_error" or
        "load_error". Errors are logged and counted, not raised.
        """
        async with self._lock:
            self.status.polls += 1
            self.status.last_poll_at = time.time()
            try:
                version = await asyncio.to_thread(champion_version, self._cfg)
            except ChampionNotFoundError as err:
                return self._record_no_champion(err)
            except Exception as err:  # noqa: BLE001 - a failed poll of any kind keeps the model in use
                return self._record_error("poll", err)

            self.status.champion_found = True
            if self.current is not None and self.current.version == version:
                self.status.last_error = None
                return "unchanged"
            return await self._load(version)

    async def run(self) -> None:
        """Poll every `poll_interval_s` seconds until cancelled."""
        while True:
            await asyncio.sleep(self._settings.poll_interval_s)
            await self.refresh()

    async def _load(self, version: str) -> str:
        try:
            loaded = await asyncio.to_thread(load_version, self._cfg, version)
            model = prepare_model(loaded, self._feature_names, self._settings)
            await asyncio.to_thread(warm_up, model, self._settings)
        except Exception as err:  # noqa: BLE001 - any failed load keeps the model in use
            return self._record_error("load", err)

        previous = self.current
        self.current = model
        self.status.last_error = None
        self._metrics.show_model_version(model.version)
        if previous is not None:
            self._metrics.model_swaps.inc()
        logger.info(
            "now scoring with model version %s (was %s); flag above %.4f, block above %.4f",
            model.version, "rules" if previous is None else previous.version, model.flag_threshold, model.block_threshold,
        )
        return "swapped"

    def _record_no_champion(self, err: ChampionNotFoundError) -> str:
        self.status.champion_found = False
        self.status.last_error = str(err)
        if self.current is None:
            logger.warning("%s Scoring with the rule fallback until a champion is registered.", err)
        else:
            logger.warning("%s Keeping version %s.", err, self.current.version)
        return "no_champion"

    def _record_error(self, kind: str, err: BaseException) -> str:
        self.status.last_error = f"{type(err).__name__}: {err}"
        self.status.errors[kind] = self.status.errors.get(kind, 0) + 1
        self._metrics.registry_errors.labels(kind=kind).inc()
        logger.error(
            "model registry %s failed (%d so far): %s. Keeping %s.",
            kind, self.status.errors[kind], self.status.last_error, f"version {self.version}",
        )
        return "registry_error" if kind == "poll" else "load_error"
