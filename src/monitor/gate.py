"""Promotion gate: a challenger replaces the champion only when it wins on the same held-out data.

Both models score the same held-out sessions, each at its own threshold. The challenger
is promoted when all checks pass:

1. the held-out set has `gate.min_holdout_sessions` sessions and
   `gate.min_holdout_per_class` of each class;
2. its `gate.metric` beats the champion's by more than `gate.min_improvement`;
3. no metric in `gate.floors` is below its floor;
4. its flag rate on sessions labelled human (label 0) is within `gate.flag_rate_human`.

The caller holds the monitor lock, so the champion cannot change between the
comparison and the alias move. Each decision is logged as an MLflow run named
"promotion-gate" and as tags on the challenger version.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from src.monitor.registry_ops import current_champion, mark_challenger, move_champion, record_run, registry_client, set_version_tags
from src.serve.champion import LoadedModel, load_version
from src.train.metrics import ranking_metrics
from src.train.model_io import feature_matrix, predict_proba

logger = logging.getLogger(__name__)

BOT, HUMAN = 1, 0


@dataclass
class GateCheck:
    """One condition of the gate: the value, the bound it must meet and whether it did."""

    name: str
    value: float | None
    bound: str
    passed: bool


@dataclass
class GateDecision:
    """The gate's verdict with every number it was based on."""

    promote: bool
    reason: str
    challenger_version: str
    champion_version: str | None
    metric: str
    min_improvement: float
    champion: dict[str, float | None] = field(default_factory=dict)
    challenger: dict[str, float | None] = field(default_factory=dict)
    checks: list[GateCheck] = field(default_factory=list)
    holdout_source: str = ""
    run_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form of the decision."""
        return asdict(self)


def holdout_metrics(model: LoadedModel, holdout: pd.DataFrame) -> dict[str, float | None]:
    """Score the held-out sessions with one model at its own threshold and return its metrics."""
    labels = holdout["label"].to_numpy(dtype=np.int64)
    scores = predict_proba(model.booster, feature_matrix(holdout, model.meta.feature_names))
    flagged = scores >= model.meta.threshold
    bots, humans = flagged[labels == BOT], flagged[labels == HUMAN]
    return {
        **ranking_metrics(labels, scores),
        "recall_at_threshold": float(bots.mean()) if len(bots) else None,
        "flag_rate_human": float(humans.mean()) if len(humans) else None,
        "threshold": float(model.meta.threshold),
    }


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def gate_checks(
    champion: dict[str, float | None] | None, challenger: dict[str, float | None], holdout: pd.DataFrame, gate_cfg: DictConfig
) -> list[GateCheck]:
    """Evaluate every gate condition; `champion` None means there is no champion to beat."""
    labels = holdout["label"].to_numpy(dtype=np.int64)
    per_class = min(int((labels == BOT).sum()), int((labels == HUMAN).sum()))
    checks = [
        GateCheck("holdout_sessions", float(len(labels)), f">= {int(gate_cfg.min_holdout_sessions)}", len(labels) >= int(gate_cfg.min_holdout_sessions)),
        GateCheck("holdout_sessions_per_class", float(per_class), f">= {int(gate_cfg.min_holdout_per_class)}", per_class >= int(gate_cfg.min_holdout_per_class)),
    ]

    metric, margin = str(gate_cfg.metric), float(gate_cfg.min_improvement)
    if champion is not None:
        new, old = challenger.get(metric), champion.get(metric)
        improvement = new - old if _finite(new) and _finite(old) else None
        checks.append(GateCheck(f"{metric}_improvement", improvement, f"> {margin:g}", improvement is not None and improvement > margin))

    for name, floor in gate_cfg.floors.items():
        value = challenger.get(str(name))
        checks.append(GateCheck(f"{name}_floor", value, f">= {float(floor):g}", _finite(value) and value >= float(floor)))

    bounds = gate_cfg.flag_rate_human
    rate = challenger.get("flag_rate_human")
    within = _finite(rate) and float(bounds.min) <= rate <= float(bounds.max)
    checks.append(GateCheck("flag_rate_human", rate, f"in [{float(bounds.min):g}, {float(bounds.max):g}]", within))
    return checks


def explain(checks: list[GateCheck], challenger_version: str, champion_version: str | None) -> str:
    """Return a one-line reason: every failed check, or why the challenger wins."""
    failed = [c for c in checks if not c.passed]
    if failed:
        detail = "; ".join(f"{c.name} {_format(c.value)} not {c.bound}" for c in failed)
        return f"version {challenger_version} not promoted: {detail}"
    versus = f"champion version {champion_version}" if champion_version else "no champion"
    return f"version {challenger_version} promoted over {versus}: every gate check passed"


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def run_gate(cfg: DictConfig, challenger_version: str, holdout: pd.DataFrame, holdout_source: str) -> GateDecision:
    """Compare the challenger with the champion on `holdout`, promote it when it passes, and log the decision.

    The caller must hold the monitor lock.
    """
    client = registry_client(cfg)
    gate_cfg = cfg.monitor.gate
    champion_version = current_champion(client, cfg)
    if champion_version == challenger_version:
        raise ValueError(f"version {challenger_version} is already the champion; there is nothing to compare")

    challenger = holdout_metrics(load_version(cfg, challenger_version, client), holdout)
    champion = holdout_metrics(load_version(cfg, champion_version, client), holdout) if champion_version else None
    checks = gate_checks(champion, challenger, holdout, gate_cfg)
    promote = all(c.passed for c in checks)
    decision = GateDecision(
        promote, explain(checks, challenger_version, champion_version), challenger_version, champion_version,
        str(gate_cfg.metric), float(gate_cfg.min_improvement), champion or {}, challenger, checks, holdout_source,
    )

    if promote:
        move_champion(client, cfg, challenger_version, decision.reason)
    else:
        mark_challenger(client, cfg, challenger_version)
    decision.run_id = record_decision(cfg, decision)
    logger.info("promotion gate: %s", decision.reason)
    return decision


def record_decision(cfg: DictConfig, decision: GateDecision) -> str:
    """Log the decision as an MLflow run and as tags on the challenger version; return the run id."""
    metrics: dict[str, float | None] = {f"champion_{k}": v for k, v in decision.champion.items()}
    metrics |= {f"challenger_{k}": v for k, v in decision.challenger.items()}
    metrics |= {f"check_{c.name}": c.value for c in decision.checks}
    params = {
        "challenger_version": decision.challenger_version, "champion_version": decision.champion_version or "none",
        "metric": decision.metric, "min_improvement": decision.min_improvement, "holdout_source": decision.holdout_source,
    }
    outcome = "promoted" if decision.promote else "rejected"
    run_id = record_run(cfg, "promotion-gate", params, metrics, {"gate_decision": outcome, "gate_reason": decision.reason})

    tags = {"gate_decision": outcome, "gate_reason": decision.reason, "gate_run_id": run_id}
    set_version_tags(registry_client(cfg), cfg, decision.challenger_version, tags)
    return run_id
