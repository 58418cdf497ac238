"""Compare training-data strategies on one prepared dataset and log each to MLflow.

`prepare_data` runs simulate, collect, preprocess, labels and featurize once, on the real
logs mixed with simulated traffic, and builds the held-out simulation. Each variant then
changes only the training step: which rows, which labels, which weights or which columns.
Every variant is trained once per seed in `evaluate.strategy.seeds`, measured on the same
real test sessions and the same held-out simulation, and logged as one MLflow run.

Metrics per variant (means over the seeds, with the spread):
- masked-UA recall at the target FPR on the real test sessions, session and click level;
- the presumed-human flag rate of real test sessions at the operating threshold;
- recall of every held-out simulated family at the target FPR of simulated humans;
- PR-AUC of the real test sessions.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from omegaconf import DictConfig, OmegaConf
from sklearn.ensemble import IsolationForest

from src.data.collect import collect_files
from src.data.labels import build_labels, compile_honeypot_patterns, summarize_sessions
from src.data.preprocess import preprocess
from src.data.schema import REVIEW_COLUMNS
from src.data.simulate import FAMILY_POLICY, simulate
from src.data.sources import LogFile, discover_log_files
from src.features.featurize import featurize
from src.train.dataset import Dataset, last_rows, load_dataset, mask_training_crawlers, primary_population, session_weights
from src.train.evaluate import MODEL, evaluate_levels, flat_metrics, metric_names
from src.train.holdout import holdout_sessions, human_families
from src.train.metrics import recall_at_threshold, threshold_at_fpr
from src.train.model_io import ModelMeta, feature_matrix, predict_proba
from src.train.split import TEST, TRAIN, VALID
from src.train.tracking import configure_tracking, data_version, git_commit, tracking_uri
from src.train.train import booster_params, fit_booster, operating_threshold

logger = logging.getLogger(__name__)

SIMULATED_DIR = "simulated"
WEIGHT = "_weight"
ANOMALY_COLUMN = "anomaly_score"
UNLABELED_SOURCE = "none"
# Row column that marks the unlabeled rows of positive-unlabeled learning, when a variant
# sets it; without it, the presumed-human rows (label source "none") are the unlabeled ones.
UNLABELED = "_unlabeled"
# Keeps the Elkan-Noto odds g / (1 - g) finite where the classifier returns exactly 1.
PROBABILITY_CEILING = 1.0 - 1e-6
REPORT_BEGIN = "<!-- BEGIN botclick experiments: generated, rerun the command to update -->"
REPORT_END = "<!-- END botclick experiments -->"


@dataclass
class PreparedData:
    """Everything the variants share: the labelled dataset, events, honeypot hits and the held-out simulation (None when not built)."""

    dataset: Dataset
    features: pd.DataFrame
    labels: pd.DataFrame
    events: pd.DataFrame
    honeypot_sessions: set[str]
    holdout: pd.DataFrame | None
    data_version: dict[str, str]


@dataclass
class Candidate:
    """A trained variant: the booster, its metadata and the columns it adds before scoring."""

    booster: xgb.Booster
    meta: ModelMeta
    add_columns: Callable[[pd.DataFrame], pd.DataFrame] = lambda frame: frame
    diagnostics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    """One training strategy: a name, what it changes, its trainer and the params it logs."""

    name: str
    description: str
    train: Callable[[PreparedData, DictConfig], Candidate]
    params: dict[str, object]
    # True when keeping the variant would change the scoring service, not only training.
    serving_change: bool = False


# ---------------------------------------------------------------- data preparation


def with_overrides(cfg: DictConfig, values: dict[str, object]) -> DictConfig:
    """Return a copy of `cfg` with dotted keys set, e.g. {"train.mask_ua_fraction": 0.0}."""
    copy = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for key, value in values.items():
        OmegaConf.update(copy, key, value)
    return copy


def stage_config(cfg: DictConfig, workdir: Path) -> DictConfig:
    """Return a copy of `cfg` that mixes in the simulation written to `workdir`."""
    return with_overrides(cfg, {"paths.sim_dir": str(workdir / SIMULATED_DIR), "data.mix_simulated": True})


def reviews_file(cfg: DictConfig, workdir: Path) -> Path:
    """Return the configured reviews file, or an empty one in `workdir` when it does not exist."""
    configured = Path(str(cfg.paths.reviews))
    if configured.is_file():
        return configured
    logger.info("reviews file %s not found, so no session gets a review label", configured)
    empty = workdir / "reviews.csv"
    empty.write_text(",".join(REVIEW_COLUMNS) + "\n", encoding="utf-8")
    return empty


def honeypot_session_ids(events: pd.DataFrame, cfg: DictConfig) -> set[str]:
    """Return the sessions that requested a honeypot path (`labels.honeypot_patterns`)."""
    sessions = summarize_sessions(events, compile_honeypot_patterns(list(cfg.labels.honeypot_patterns)))
    return set(sessions.loc[sessions["honeypot"], "session_id"])


def prepare_data(log_files: list[LogFile], cfg: DictConfig, workdir: Path, with_holdout: bool = True) -> PreparedData:
    """Simulate, collect, preprocess, label and featurize once, with every file in `workdir`.

    `log_files` are the real logs. The simulation (`simulate.seed`) is always mixed in,
    because most variants need it; the `real_only` variant drops it again. The held-out
    simulation (`evaluate.holdout_seed`) is built only `with_holdout`.
    """
    cfg = stage_config(cfg, workdir)
    sim_dir = workdir / SIMULATED_DIR
    simulate(cfg, sim_dir)
    sim_files = discover_log_files(sim_dir, list(cfg.data.log_globs), list(cfg.data.jsonl_globs))

    raw = workdir / "raw.parquet"
    events_path, labels_path, features_path = workdir / "events.parquet", workdir / "labels.parquet", workdir / "features.parquet"
    collect_files([*log_files, *sim_files], raw, workdir / "quarantine.jsonl", workdir / "collect.json", cfg)
    preprocess(raw, events_path, workdir / "preprocess.json", cfg)
    ground_truth = sim_dir / str(cfg.simulate.ground_truth_file)
    build_labels(events_path, reviews_file(cfg, workdir), ground_truth, labels_path, workdir / "labels.json", cfg)
    featurize(events_path, features_path, cfg)

    events = pd.read_parquet(events_path)
    return PreparedData(
        dataset=load_dataset(features_path, labels_path, cfg),
        features=pd.read_parquet(features_path),
        labels=pd.read_parquet(labels_path),
        events=events,
        honeypot_sessions=honeypot_session_ids(events, cfg),
        holdout=holdout_sessions(cfg, workdir / "holdout") if with_holdout else None,
        data_version=data_version([features_path, labels_path]),
    )


# ---------------------------------------------------------------- training helpers


def with_rows(data: Dataset, rows: pd.DataFrame, extra_columns: tuple[str, ...] = ()) -> Dataset:
    """Return a Dataset with other rows (and optionally more model columns)."""
    return Dataset(rows=rows.reset_index(drop=True), sessions=data.sessions, feature_names=[*data.feature_names, *extra_columns])


def trained_candidate(booster: xgb.Booster, data: Dataset, cfg: DictConfig, diagnostics: dict[str, float] | None = None) -> Candidate:
    """Wrap a booster with its operating threshold, set on the valid presumed-human sessions of `data`."""
    meta = ModelMeta(
        feature_names=list(data.feature_names),
        threshold=operating_threshold(booster, data, cfg),
        best_iteration=booster.num_boosted_rounds() - 1,
    )
    return Candidate(booster=booster, meta=meta, diagnostics=diagnostics or {})


def base_weights(rows: pd.DataFrame, cfg: DictConfig) -> np.ndarray:
    """Return the row weights `fit_booster` uses: 1 / session rows, or 1 with weighting off."""
    if bool(cfg.train.weight_by_session):
        return session_weights(rows)
    return np.ones(len(rows), dtype=np.float64)


def fit_weighted_booster(train_rows: pd.DataFrame, valid_rows: pd.DataFrame, names: list[str], cfg: DictConfig) -> xgb.Booster:
    """Fit like `fit_booster`, on train rows that are already masked and carry their weight in WEIGHT.

    Valid rows keep their own labels and session weights and only drive early stopping.
    """
    if train_rows["label"].nunique() < 2:
        raise ValueError(f"the training rows have a single class (label counts {train_rows['label'].value_counts().to_dict()}); add more data")
    train_matrix = xgb.DMatrix(
        feature_matrix(train_rows, names), label=train_rows["label"].to_numpy(), weight=train_rows[WEIGHT].to_numpy(), feature_names=names
    )
    evals = [(train_matrix, "train")]
    if not valid_rows.empty:
        valid_matrix = xgb.DMatrix(
            feature_matrix(valid_rows, names), label=valid_rows["label"].to_numpy(), weight=base_weights(valid_rows, cfg), feature_names=names
        )
        evals.append((valid_matrix, "valid"))

    booster = xgb.train(
        booster_params(cfg.model, int(cfg.seed)),
        train_matrix,
        num_boost_round=int(cfg.model.num_boost_round),
        evals=evals,
        early_stopping_rounds=int(cfg.model.early_stopping_rounds) if len(evals) > 1 else None,
        verbose_eval=False,
    )
    best_round = int(booster.best_iteration) if len(evals) > 1 else booster.num_boosted_rounds() - 1
    return booster[: best_round + 1]


def masked_train_rows(data: Dataset, cfg: DictConfig) -> pd.DataFrame:
    """Return the train rows with crawler user agents masked, as `fit_booster` uses them, plus WEIGHT."""
    rows = data.part(TRAIN)
    # NOTE: borrow_user_agents raises IndexError when no session is chosen, so a fraction
    # of 0 skips masking here, which is what masking nothing means.
    if float(cfg.train.mask_ua_fraction) > 0:
        rows = mask_training_crawlers(rows, cfg, int(cfg.seed))
    rows = rows.reset_index(drop=True)
    return rows.assign(**{WEIGHT: base_weights(rows, cfg)})


def session_scores(booster: xgb.Booster, rows: pd.DataFrame, names: list[str]) -> pd.Series:
    """Return each session's score at its last row, indexed by session id."""
    last = last_rows(rows)
    return pd.Series(predict_proba(booster, feature_matrix(last, names)), index=last["session_id"].to_numpy())


# ---------------------------------------------------------------- variants: rows and labels


def train_default(prepared: PreparedData, cfg: DictConfig) -> Candidate:
    """Train exactly as the train stage does, on real and simulated rows."""
    return trained_candidate(fit_booster(prepared.dataset, cfg), prepared.dataset, cfg)


def train_real_only(prepared: PreparedData, cfg: DictConfig) -> Candidate:
    """Train on the real rows alone, as `data.mix_simulated: false` would.

    Splits are made per source, so dropping the simulated source leaves every real session
    in the set it had with mixing on.
    """
    rows = prepared.dataset.rows
    real = with_rows(prepared.dataset, rows[rows["label_source"] != "simulator"])
    return trained_candidate(fit_booster(real, cfg), real, cfg)


def train_masked(prepared: PreparedData, cfg: DictConfig, fraction: float) -> Candidate:
    """Train as the default does with another `train.mask_ua_fraction`.

    Uses `fit_weighted_booster` with the default weights, which fits the same model as
    `fit_booster` and also accepts a fraction of 0.
    """
    masked_cfg = with_overrides(cfg, {"train.mask_ua_fraction": fraction})
    data = prepared.dataset
    booster = fit_weighted_booster(masked_train_rows(data, masked_cfg), data.part(VALID), data.feature_names, masked_cfg)
    return trained_candidate(booster, data, masked_cfg)


def honeypot_labelled(prepared: PreparedData) -> Dataset:
    """Return the dataset with simulated sessions labelled as if no simulator ground truth existed.

    A simulated session is a bot when it requested a honeypot path or declares a crawler
    user agent, and presumed human otherwise, as the labels stage labels real sessions.
    `label_source` stays "simulator", so that headline metrics and the threshold still
    use the real sessions only. UNLABELED marks the label-0 sessions, real and simulated,
    for the positive-unlabeled variants that start from these labels.
    """
    rows = prepared.dataset.rows
    simulated = rows["label_source"] == "simulator"
    honeypot = rows["session_id"].isin(prepared.honeypot_sessions)
    label = np.where(simulated, (honeypot | rows["declared_crawler"]).astype(int), rows["label"])
    unlabeled = (label == 0) & (simulated | (rows["label_source"] == UNLABELED_SOURCE)).to_numpy()
    return with_rows(prepared.dataset, rows.assign(label=label, **{UNLABELED: unlabeled}))


def train_honeypot_labels(prepared: PreparedData, cfg: DictConfig) -> Candidate:
    """Train with honeypot and declared-crawler labels in place of the simulator's bot labels."""
    data = honeypot_labelled(prepared)
    sim_rows = data.rows[data.rows["label_source"] == "simulator"]
    sim_bots = last_rows(sim_rows)["label"].sum()
    candidate = trained_candidate(fit_booster(data, cfg), data, cfg)
    candidate.diagnostics = {"simulated_bot_sessions": float(sim_bots)}
    return candidate


def benign_automation_families() -> list[str]:
    """Return the simulator families that are automated but not bots (feed readers, uptime monitors)."""
    return [name for name, (is_bot, automated) in FAMILY_POLICY.items() if automated and not is_bot]


def train_automation_as_bot(prepared: PreparedData, cfg: DictConfig) -> Candidate:
    """Train with simulated benign automation labelled 1, as real feed readers and monitors are.

    In real logs most feed readers and uptime monitors declare themselves, so the labels
    stage gives them label 1 (declared crawler), while the simulator's ground truth gives
    the same traffic label 0. This variant makes the simulated labels match the real ones.
    """
    rows = prepared.dataset.rows
    benign = (rows["label_source"] == "simulator") & rows["family"].isin(benign_automation_families())
    data = with_rows(prepared.dataset, rows.assign(label=np.where(benign, 1, rows["label"])))
    return trained_candidate(fit_booster(data, cfg), data, cfg)


# ---------------------------------------------------------------- variants: positive-unlabeled


def unlabeled_rows(rows: pd.DataFrame) -> np.ndarray:
    """Return a mask of the unlabeled rows: the UNLABELED column, else the presumed-human rows."""
    if UNLABELED in rows.columns:
        return rows[UNLABELED].to_numpy(dtype=bool)
    return (rows["label_source"] == UNLABELED_SOURCE).to_numpy()


def pu_dataset(prepared: PreparedData, honeypot_only: bool) -> Dataset:
    """Return the dataset a PU variant starts from: as labelled, or with honeypot labels for simulated sessions."""
    return honeypot_labelled(prepared) if honeypot_only else prepared.dataset


def train_pu_weighted(prepared: PreparedData, cfg: DictConfig, unlabeled_weight: float) -> Candidate:
    """Train with presumed-human rows down-weighted: unlabeled, not surely negative."""
    data = prepared.dataset
    train_rows = masked_train_rows(data, cfg)
    unlabeled = unlabeled_rows(train_rows)
    train_rows[WEIGHT] = np.where(unlabeled, train_rows[WEIGHT] * unlabeled_weight, train_rows[WEIGHT])
    booster = fit_weighted_booster(train_rows, data.part(VALID), data.feature_names, cfg)
    return trained_candidate(booster, data, cfg)


def session_folds(session_ids: pd.Series, folds: int, seed: int) -> np.ndarray:
    """Return a fold number in [0, folds) for each row, equal for the rows of one session."""
    unique = np.sort(session_ids.unique())
    assignment = dict(zip(unique, np.random.default_rng(seed).integers(0, folds, size=len(unique)), strict=True))
    return session_ids.map(assignment).to_numpy()


def out_of_fold_scores(train_rows: pd.DataFrame, valid_rows: pd.DataFrame, names: list[str], cfg: DictConfig, folds: int) -> np.ndarray:
    """Score every train row with a model fitted on the other folds (labeled vs unlabeled)."""
    fold = session_folds(train_rows["session_id"], folds, int(cfg.seed))
    scores = np.empty(len(train_rows), dtype=np.float64)
    for k in range(folds):
        held_out = fold == k
        booster = fit_weighted_booster(train_rows[~held_out], valid_rows, names, cfg)
        scores[held_out] = predict_proba(booster, feature_matrix(train_rows[held_out], names))
    return scores


def elkan_noto_rows(train_rows: pd.DataFrame, scores: np.ndarray) -> tuple[pd.DataFrame, dict[str, float]]:
    """Return train rows with each unlabeled row split into a weighted positive and negative copy.

    Elkan and Noto (2008): with c = P(labeled | bot), estimated as the mean score of
    labelled bots, an unlabeled row is a bot with weight (1 - c) / c * g / (1 - g).
    """
    positive = (train_rows["label"] == 1).to_numpy()
    weights = train_rows[WEIGHT].to_numpy()
    c = float(np.average(scores[positive], weights=weights[positive]))
    g = np.minimum(scores, PROBABILITY_CEILING)
    bot_weight = np.clip((1.0 - c) / c * g / (1.0 - g), 0.0, 1.0)

    unlabeled = unlabeled_rows(train_rows)
    as_bot = train_rows[unlabeled].assign(label=1, **{WEIGHT: weights[unlabeled] * bot_weight[unlabeled]})
    as_human = train_rows[unlabeled].assign(**{WEIGHT: weights[unlabeled] * (1.0 - bot_weight[unlabeled])})
    rows = pd.concat([train_rows[~unlabeled], as_bot, as_human], ignore_index=True)

    unlabeled_weight = weights[unlabeled]
    share = float(np.sum(unlabeled_weight * bot_weight[unlabeled]) / np.sum(unlabeled_weight)) if unlabeled.any() else math.nan
    return rows, {"label_frequency_c": c, "unlabeled_bot_share": share}


def train_pu_elkan_noto(prepared: PreparedData, cfg: DictConfig, folds: int, honeypot_only: bool = False) -> Candidate:
    """Train with Elkan-Noto weights from out-of-fold labeled-vs-unlabeled scores."""
    data = pu_dataset(prepared, honeypot_only)
    train_rows = masked_train_rows(data, cfg)
    scores = out_of_fold_scores(train_rows, data.part(VALID), data.feature_names, cfg, folds)
    rows, diagnostics = elkan_noto_rows(train_rows, scores)
    booster = fit_weighted_booster(rows, data.part(VALID), data.feature_names, cfg)
    return trained_candidate(booster, data, cfg, diagnostics=diagnostics)


def spy_rows(train_rows: pd.DataFrame, valid_rows: pd.DataFrame, names: list[str], cfg: DictConfig) -> tuple[pd.DataFrame, dict[str, float]]:
    """Return train rows without the unlabeled sessions that score like hidden bots (spy technique).

    A share of bot sessions (spies) is relabelled 0 and a model is fitted. Unlabeled sessions
    that score at or above the `spy_quantile` of the spies' scores are dropped; the rest are
    reliable negatives. The spies keep their bot label in the returned rows.
    """
    pu = cfg.evaluate.strategy.pu
    bots = np.sort(train_rows.loc[train_rows["label"] == 1, "session_id"].unique())
    rng = np.random.default_rng(int(cfg.seed))
    spies = set(bots[rng.random(len(bots)) < float(pu.spy_fraction)])
    spied = train_rows.assign(label=np.where(train_rows["session_id"].isin(spies), 0, train_rows["label"]))
    scores = session_scores(fit_weighted_booster(spied, valid_rows, names, cfg), spied, names)

    cutoff = float(np.quantile(scores[scores.index.isin(spies)], float(pu.spy_quantile))) if spies else math.inf
    unlabeled = train_rows.loc[unlabeled_rows(train_rows), "session_id"].unique()
    dropped = set(scores.index[(scores >= cutoff) & scores.index.isin(unlabeled)])
    kept = train_rows[~train_rows["session_id"].isin(dropped)]
    return kept, {"spy_cutoff": cutoff, "unlabeled_sessions_dropped": float(len(dropped)), "unlabeled_sessions": float(len(unlabeled))}


def train_pu_spy(prepared: PreparedData, cfg: DictConfig, honeypot_only: bool = False) -> Candidate:
    """Train on labelled bots against reliable negatives found with spies."""
    data = pu_dataset(prepared, honeypot_only)
    rows, diagnostics = spy_rows(masked_train_rows(data, cfg), data.part(VALID), data.feature_names, cfg)
    booster = fit_weighted_booster(rows, data.part(VALID), data.feature_names, cfg)
    return trained_candidate(booster, data, cfg, diagnostics=diagnostics)


# ---------------------------------------------------------------- variant: anomaly score feature


def anomaly_inputs(names: list[str], cfg: DictConfig) -> list[str]:
    """Return the model columns the IsolationForest sees: all but `anomaly.excluded_prefixes`."""
    excluded = tuple(cfg.evaluate.strategy.anomaly.excluded_prefixes)
    return [name for name in names if not name.startswith(excluded)]


def anomaly_scorer(train_rows: pd.DataFrame, names: list[str], cfg: DictConfig) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Fit an IsolationForest on the training sessions' last rows; return a function that adds its score.

    The added column is minus sklearn's `score_samples`, so higher means more anomalous.
    """
    settings = cfg.evaluate.strategy.anomaly
    columns = anomaly_inputs(names, cfg)
    fill = float(settings.missing_value)
    forest = IsolationForest(
        n_estimators=int(settings.n_estimators), max_samples=int(settings.max_samples), random_state=int(cfg.seed), n_jobs=1
    )
    forest.fit(np.nan_to_num(feature_matrix(last_rows(train_rows), columns), nan=fill))

    def add_score(frame: pd.DataFrame) -> pd.DataFrame:
        matrix = np.nan_to_num(feature_matrix(frame, columns), nan=fill)
        return frame.assign(**{ANOMALY_COLUMN: -forest.score_samples(matrix) if len(frame) else np.empty(0)})

    return add_score


def train_anomaly_feature(prepared: PreparedData, cfg: DictConfig) -> Candidate:
    """Train the default model with the IsolationForest score as one more column."""
    data = prepared.dataset
    add_score = anomaly_scorer(data.part(TRAIN), data.feature_names, cfg)
    extended = with_rows(data, add_score(data.rows), (ANOMALY_COLUMN,))
    candidate = trained_candidate(fit_booster(extended, cfg), extended, cfg)
    candidate.add_columns = add_score
    return candidate


# ---------------------------------------------------------------- the variant list


def build_variants(cfg: DictConfig) -> dict[str, Variant]:
    """Return every known variant by name, with settings from `evaluate.strategy`."""
    strategy = cfg.evaluate.strategy
    pu = strategy.pu
    variants = [
        Variant("real_only", "real logs only (data.mix_simulated=false)", train_real_only, {"data.mix_simulated": False}),
        Variant("mixed", "real logs + simulated traffic with simulator labels (current default)", train_default, {"data.mix_simulated": True}),
        Variant(
            "honeypot_labels", "simulated sessions labelled by honeypot hits and declared crawlers only, no simulator labels",
            train_honeypot_labels, {"labels.simulated": "honeypot+declared_crawler"},
        ),
        Variant(
            "automation_as_bot", "simulated feed readers and uptime monitors labelled 1, as declared crawlers in real logs are",
            train_automation_as_bot, {"labels.benign_automation": 1},
        ),
        Variant(
            "pu_unlabeled_weight", f"presumed-human rows weighted {float(pu.unlabeled_weight):g} (unlabeled, not negative)",
            partial(train_pu_weighted, unlabeled_weight=float(pu.unlabeled_weight)), {"pu.unlabeled_weight": float(pu.unlabeled_weight)},
        ),
        Variant(
            "pu_elkan_noto", f"Elkan-Noto weights from {int(pu.folds)}-fold labeled-vs-unlabeled scores",
            partial(train_pu_elkan_noto, folds=int(pu.folds)), {"pu.folds": int(pu.folds)},
        ),
        Variant(
            "pu_spy", f"spy technique: {float(pu.spy_fraction):g} of bots hidden, reliable negatives below their {float(pu.spy_quantile):g} quantile",
            train_pu_spy, {"pu.spy_fraction": float(pu.spy_fraction), "pu.spy_quantile": float(pu.spy_quantile)},
        ),
        Variant(
            "honeypot_pu_elkan_noto", "honeypot labels for simulated sessions, then Elkan-Noto with every other simulated session unlabeled",
            partial(train_pu_elkan_noto, folds=int(pu.folds), honeypot_only=True), {"pu.folds": int(pu.folds), "labels.simulated": "honeypot+declared_crawler"},
        ),
        Variant(
            "honeypot_pu_spy", "honeypot labels for simulated sessions, then the spy technique with every other simulated session unlabeled",
            partial(train_pu_spy, honeypot_only=True), {"pu.spy_fraction": float(pu.spy_fraction), "labels.simulated": "honeypot+declared_crawler"},
        ),
        Variant(
            "anomaly_feature", "IsolationForest score of the behavioural features as an extra column",
            train_anomaly_feature, {"anomaly.n_estimators": int(strategy.anomaly.n_estimators)}, serving_change=True,
        ),
    ]
    for fraction in strategy.mask_ua_fractions:
        value = float(fraction)
        variants.append(
            Variant(f"mask_ua_{value:g}", f"train.mask_ua_fraction={value:g}", partial(train_masked, fraction=value), {"train.mask_ua_fraction": value})
        )
    return {variant.name: variant for variant in variants}


def select_variants(cfg: DictConfig, names: list[str] | None) -> list[Variant]:
    """Return the variants to run: `names`, else `evaluate.strategy.variants`, always with the reference."""
    known = build_variants(cfg)
    chosen = list(names or cfg.evaluate.strategy.variants)
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {sorted(known)} (evaluate.strategy.variants)")
    reference = str(cfg.evaluate.strategy.reference)
    if reference not in known:
        raise ValueError(f"evaluate.strategy.reference {reference!r} is not a variant; choose from {sorted(known)}")
    if reference not in chosen:
        chosen.insert(0, reference)
    return [known[name] for name in chosen]


# ---------------------------------------------------------------- measurement


def holdout_metrics(candidate: Candidate, holdout: pd.DataFrame | None, cfg: DictConfig) -> dict[str, float]:
    """Return per-family flag rates on the held-out simulation at the target FPR of simulated humans.

    Also the mean bot-family recall at the operating threshold, and the flag rate of benign
    automation (feed readers, uptime monitors) at that threshold.
    """
    if holdout is None:
        raise ValueError("the prepared data has no held-out simulation; call prepare_data with with_holdout=True")
    rows = candidate.add_columns(holdout)
    scores = predict_proba(candidate.booster, feature_matrix(rows, candidate.meta.feature_names))
    family = holdout["family"].to_numpy()
    sim_threshold = threshold_at_fpr(scores[np.isin(family, list(human_families()))], float(cfg.evaluate.target_fpr))

    metrics = {f"holdout_recall_{name}": recall_at_threshold(scores[family == name], sim_threshold) for name in np.unique(family)}
    bots = [name for name, (is_bot, _) in FAMILY_POLICY.items() if is_bot and name in set(family)]
    benign = benign_automation_families()
    bot_recalls = [metrics[f"holdout_recall_{name}"] for name in bots]
    metrics["holdout_bot_recall_min"] = float(np.min(bot_recalls))
    metrics["holdout_bot_recall_mean"] = float(np.mean(bot_recalls))
    metrics["holdout_bot_recall_mean_at_operating_threshold"] = float(
        np.mean([recall_at_threshold(scores[family == name], candidate.meta.threshold) for name in bots])
    )
    metrics["holdout_benign_automation_flag_rate_at_operating_threshold"] = recall_at_threshold(
        scores[np.isin(family, benign)], candidate.meta.threshold
    )
    return metrics


def measure(candidate: Candidate, prepared: PreparedData, cfg: DictConfig) -> dict[str, float]:
    """Return the real-log test metrics and the held-out simulation metrics of one trained variant."""
    test, _ = primary_population(prepared.dataset.part(TEST))
    if test["label"].nunique() < 2:
        raise ValueError(
            f"the real test split has labels {sorted(test['label'].unique())}; it needs bot and presumed-human sessions. Use more or longer logs."
        )
    levels, details = evaluate_levels(candidate.add_columns(test), candidate.booster, candidate.meta, cfg)
    metrics = flat_metrics(levels[MODEL])
    metrics["flag_rate_presumed_human"] = details["flag_rate_presumed_human"]
    metrics["threshold"] = candidate.meta.threshold
    metrics["trees"] = float(candidate.booster.num_boosted_rounds())
    metrics.update(holdout_metrics(candidate, prepared.holdout, cfg))
    metrics.update({f"diagnostic_{k}": v for k, v in candidate.diagnostics.items()})
    return {name: float(value) for name, value in metrics.items() if value is not None}


@dataclass
class VariantResult:
    """The metrics of one variant for every seed, their means and spreads, and its MLflow run."""

    variant: Variant
    per_seed: list[dict[str, float]]
    seconds: float
    run_id: str = ""

    def mean(self, name: str) -> float:
        """Return the mean of one metric over the seeds (NaN when no seed has it)."""
        values = [m[name] for m in self.per_seed if name in m and np.isfinite(m[name])]
        return float(np.mean(values)) if values else math.nan

    def spread(self, name: str) -> float:
        """Return the standard deviation of one metric over the seeds (0 for one seed)."""
        values = [m[name] for m in self.per_seed if name in m and np.isfinite(m[name])]
        return float(np.std(values)) if values else math.nan

    def metric_names(self) -> list[str]:
        """Return every metric name that some seed reported, sorted."""
        return sorted({name for metrics in self.per_seed for name in metrics})


def run_variant(variant: Variant, prepared: PreparedData, cfg: DictConfig) -> VariantResult:
    """Train and measure one variant once per seed."""
    per_seed = []
    started = time.perf_counter()
    for seed in cfg.evaluate.strategy.seeds:
        seed_cfg = with_overrides(cfg, {"seed": int(seed)})
        candidate = variant.train(prepared, seed_cfg)
        per_seed.append(measure(candidate, prepared, seed_cfg))
        logger.info("variant %s seed %s: %s", variant.name, seed, {k: round(v, 4) for k, v in per_seed[-1].items() if "masked" in k or "bot_recall" in k})
    return VariantResult(variant=variant, per_seed=per_seed, seconds=time.perf_counter() - started)


# ---------------------------------------------------------------- MLflow


def log_variant(result: VariantResult, prepared: PreparedData, cfg: DictConfig, experiment_id: str, batch: str) -> str:
    """Log one variant as one run: params, the mean and spread of each metric, and per-seed values as steps."""
    client = MlflowClient()
    variant = result.variant
    tags = {"git_commit": git_commit(), "strategy_batch": batch, "data_version": prepared.data_version["data_version"]}
    run = client.create_run(experiment_id, run_name=variant.name, tags=tags)
    seeds = list(cfg.evaluate.strategy.seeds)
    params = {
        "variant": variant.name,
        "description": variant.description,
        "seeds": ",".join(str(s) for s in seeds),
        "serving_change": variant.serving_change,
        "train.mask_ua_fraction": cfg.train.mask_ua_fraction,
        "evaluate.target_fpr": cfg.evaluate.target_fpr,
        "evaluate.holdout_seed": cfg.evaluate.holdout_seed,
        **variant.params,
    }
    now = int(time.time() * 1000)
    metrics = [Metric("fit_seconds", result.seconds, now, 0)]
    for name in result.metric_names():
        metrics += [Metric(name, result.mean(name), now, 0), Metric(f"{name}_std", result.spread(name), now, 0)]
        metrics += [Metric(f"{name}_per_seed", m[name], now, step) for step, m in enumerate(result.per_seed) if name in m]
    client.log_batch(run.info.run_id, metrics=[m for m in metrics if np.isfinite(m.value)], params=[Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


# ---------------------------------------------------------------- verdicts and report


def verdict(result: VariantResult, reference: VariantResult, cfg: DictConfig) -> str:
    """Return "keep: ..." or "drop: ..." for a variant compared with the reference, with the reason."""
    rule = cfg.evaluate.strategy
    masked = f"session_{metric_names(float(cfg.evaluate.target_fpr))[1]}"
    gain = result.mean(masked) - reference.mean(masked)
    noise = max(result.spread(masked), reference.spread(masked))
    needed = float(rule.min_gain_serving_change if result.variant.serving_change else rule.min_gain)
    family_drop = reference.mean("holdout_bot_recall_min") - result.mean("holdout_bot_recall_min")
    flag_rate = result.mean("flag_rate_presumed_human")

    if family_drop > float(rule.max_family_recall_drop):
        return f"drop: the lowest held-out bot-family recall falls by {family_drop:.3f}"
    if flag_rate > float(rule.max_flag_rate_presumed_human):
        return f"drop: presumed-human flag rate {flag_rate:.3f} is above {float(rule.max_flag_rate_presumed_human):g}"
    if gain < needed or gain <= noise:
        return f"drop: masked-UA session recall {gain:+.3f} vs {reference.variant.name}, needs +{needed:g} and more than the seed spread {noise:.3f}"
    return f"keep: masked-UA session recall {gain:+.3f} vs {reference.variant.name} (seed spread {noise:.3f}), family recall and flag rate within limits"


def format_value(result: VariantResult, name: str, digits: int = 3) -> str:
    """Format a metric as "mean ± spread", or "n/a"."""
    mean = result.mean(name)
    if not np.isfinite(mean):
        return "n/a"
    if len(result.per_seed) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {result.spread(name):.{digits}f}"


def public_uri(uri: str) -> str:
    """Return a tracking URI without any user name or password in it, for reports."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def machine_description() -> str:
    """Describe the CPU, cores, OS and library versions of this machine."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text(encoding="utf-8").splitlines() if line.startswith("model name")]
        cpu = models[0] if models else cpu
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"xgboost {version('xgboost-cpu')}, scikit-learn {version('scikit-learn')}"
    )


def data_summary(prepared: PreparedData, cfg: DictConfig) -> list[str]:
    """Describe the prepared data: sessions per source kind and label source, and the real test set."""
    labels = prepared.labels
    real = labels["label_source"] != "simulator"
    test, _ = primary_population(prepared.dataset.part(TEST))
    test_sessions = last_rows(test)
    per_source = labels[real]["label_source"].value_counts().to_dict()
    holdout_size = 0 if prepared.holdout is None else len(prepared.holdout)
    return [
        f"- Real sessions: {int(real.sum())} by label source {per_source}; simulated sessions: {int((~real).sum())}.",
        f"- Real test sessions: {len(test_sessions)}, of which {int(test_sessions['label'].sum())} bots (declared crawlers, masked for masked-UA recall) "
        f"and {int((test_sessions['label_source'] == UNLABELED_SOURCE).sum())} presumed human.",
        f"- Held-out simulation: seed {int(cfg.evaluate.holdout_seed)} with {holdout_size} sessions; "
        f"honeypot sessions in the mixed data: {len(prepared.honeypot_sessions)}.",
    ]


MAIN_COLUMNS = (
    ("masked-UA recall, session", "session_{masked}"),
    ("masked-UA recall, click", "click_{masked}"),
    ("PR-AUC, session", "session_pr_auc"),
    ("presumed-human flag rate", "flag_rate_presumed_human"),
    ("held-out bot recall, min", "holdout_bot_recall_min"),
    ("held-out bot recall, mean", "holdout_bot_recall_mean"),
    ("held-out bot recall at operating threshold", "holdout_bot_recall_mean_at_operating_threshold"),
    ("benign automation flag rate", "holdout_benign_automation_flag_rate_at_operating_threshold"),
)


def results_tables(results: list[VariantResult], cfg: DictConfig) -> list[str]:
    """Render the main metrics table and the per-family table as Markdown lines."""
    masked = metric_names(float(cfg.evaluate.target_fpr))[1]
    columns = [(title, key.format(masked=masked)) for title, key in MAIN_COLUMNS]
    lines = ["| variant | " + " | ".join(title for title, _ in columns) + " | fit time (s) |", "|---" * (len(columns) + 2) + "|"]
    for result in results:
        cells = [format_value(result, key) for _, key in columns]
        lines.append(f"| {result.variant.name} | " + " | ".join(cells) + f" | {result.seconds:.0f} |")

    families = sorted({n.removeprefix("holdout_recall_") for r in results for n in r.metric_names() if n.startswith("holdout_recall_")})
    lines += ["", "Held-out recall per family at 1 % simulated-human FPR (people and benign automation: flag rate):", ""]
    lines += ["| variant | " + " | ".join(families) + " |", "|---" * (len(families) + 1) + "|"]
    for result in results:
        lines.append(f"| {result.variant.name} | " + " | ".join(format_value(result, f"holdout_recall_{f}", 2) for f in families) + " |")
    return lines


def report_block(results: list[VariantResult], prepared: PreparedData, cfg: DictConfig, context: dict[str, str]) -> str:
    """Render the generated part of docs/experiments.md."""
    reference = next(r for r in results if r.variant.name == str(cfg.evaluate.strategy.reference))
    seeds = ", ".join(str(s) for s in cfg.evaluate.strategy.seeds)
    lines = [
        REPORT_BEGIN,
        "",
        f"Command: `{context['command']}`",
        "",
        f"Machine: {machine_description()}. Run on {context['finished']} in {context['minutes']} min.",
        f"Values are mean ± standard deviation over {len(cfg.evaluate.strategy.seeds)} seeds ({seeds}); "
        f"MLflow experiment `{cfg.evaluate.strategy.mlflow_experiment}` at `{context['tracking_uri']}`, batch tag `strategy_batch={context['batch']}`.",
        "",
        *data_summary(prepared, cfg),
        "",
        "| variant | what changes |",
        "|---|---|",
        *[f"| {r.variant.name} | {r.variant.description} |" for r in results],
        "",
        *results_tables(results, cfg),
        "",
        f"Verdicts against `{reference.variant.name}` (rule: `evaluate.strategy` in conf/evaluate/default.yaml):",
        "",
        *[f"- `{r.variant.name}`: {verdict(r, reference, cfg)}" for r in results if r is not reference],
        "",
        REPORT_END,
    ]
    return "\n".join(lines)


def write_report(path: Path, block: str) -> None:
    """Replace the generated block of `path`, keeping the text around it; create the file when missing."""
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        if REPORT_BEGIN in text and REPORT_END in text:
            before, rest = text.split(REPORT_BEGIN, 1)
            after = rest.split(REPORT_END, 1)[1]
            path.write_text(before + block + after, encoding="utf-8")
            return
        logger.warning("%s has no generated block; appending one", path)
        path.write_text(text.rstrip("\n") + "\n\n## Measured results\n\n" + block + "\n", encoding="utf-8")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Training-data strategy experiments\n\n## Measured results\n\n" + block + "\n", encoding="utf-8")


def run_experiments(
    log_files: list[LogFile], cfg: DictConfig, workdir: Path, out: Path | None, command: str, variant_names: list[str] | None = None
) -> list[VariantResult]:
    """Prepare the data once, train and measure every variant, log each to MLflow and write the report."""
    started = time.perf_counter()
    variants = select_variants(cfg, variant_names)
    prepared = prepare_data(log_files, cfg, workdir)

    strategy_cfg = with_overrides(cfg, {"mlflow.experiment": str(cfg.evaluate.strategy.mlflow_experiment)})
    experiment_id = configure_tracking(strategy_cfg)
    batch = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = []
    for variant in variants:
        result = run_variant(variant, prepared, cfg)
        result.run_id = log_variant(result, prepared, cfg, experiment_id, batch)
        results.append(result)
        logger.info("variant %s done in %.0f s, MLflow run %s", variant.name, result.seconds, result.run_id)

    if out is not None:
        context = {
            "command": command,
            "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "minutes": f"{(time.perf_counter() - started) / 60:.1f}",
            "tracking_uri": public_uri(tracking_uri(cfg)),
            "batch": batch,
        }
        write_report(out, report_block(results, prepared, cfg, context))
        logger.info("wrote %s", out)
    return results
