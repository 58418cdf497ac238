"""Random distributions declared in conf/simulate, such as `{dist: lognormal, median: 30, sigma: 1}`.

Every distribution accepts optional `min` and `max` keys, which clip each draw. Supported
kinds and their parameters:

- `constant`: `value`
- `uniform`: `low`, `high` (real numbers)
- `uniform_int`: `low`, `high` (integers, both included)
- `normal`: `mean`, `sd`
- `lognormal`: `median`, `sigma` (sigma of the underlying normal)
- `exponential`: `mean`
- `geometric`: `mean` (integers from 1; the mean must be at least 1)
- `choice`: `values`, optional `weights`
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

PARAMETERS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "uniform": ("low", "high"),
    "uniform_int": ("low", "high"),
    "normal": ("mean", "sd"),
    "lognormal": ("median", "sigma"),
    "exponential": ("mean",),
    "geometric": ("mean",),
    "choice": ("values",),
}
OPTIONAL_KEYS: frozenset[str] = frozenset({"min", "max", "weights"})


@dataclass(frozen=True)
class Distribution:
    """One configured distribution: its kind, parameters and clipping bounds."""

    kind: str
    params: Mapping[str, Any]
    lower: float | None = None
    upper: float | None = None

    def draw(self, rng: np.random.Generator) -> float:
        """Draw one value, clipped to `[min, max]` when those are set."""
        value = _draw_raw(self, rng)
        if self.lower is not None:
            value = max(value, self.lower)
        if self.upper is not None:
            value = min(value, self.upper)
        return value

    def draw_int(self, rng: np.random.Generator) -> int:
        """Draw one value and round it to the nearest integer."""
        return int(round(self.draw(rng)))


def _draw_raw(spec: Distribution, rng: np.random.Generator) -> float:
    """Draw one unclipped value of `spec`."""
    p = spec.params
    if spec.kind == "constant":
        return float(p["value"])
    if spec.kind == "uniform":
        return float(rng.uniform(p["low"], p["high"]))
    if spec.kind == "uniform_int":
        return float(rng.integers(p["low"], p["high"], endpoint=True))
    if spec.kind == "normal":
        return float(rng.normal(p["mean"], p["sd"]))
    if spec.kind == "lognormal":
        return float(rng.lognormal(math.log(p["median"]), p["sigma"]))
    if spec.kind == "exponential":
        return float(rng.exponential(p["mean"]))
    if spec.kind == "geometric":
        return float(rng.geometric(1.0 / p["mean"]))
    weights = p.get("weights")
    probabilities = None if weights is None else np.asarray(weights, dtype=float) / float(np.sum(weights))
    return float(rng.choice(np.asarray(p["values"], dtype=float), p=probabilities))


def parse_distribution(node: Mapping[str, Any], where: str) -> Distribution:
    """Build a Distribution from a config mapping; `where` names the key in error messages.

    Raises ValueError for an unknown kind, a missing or unknown parameter, or a value out of range.
    """
    kind = node.get("dist")
    if kind not in PARAMETERS:
        raise ValueError(f"invalid distribution at {where}: dist={kind!r}; use one of {sorted(PARAMETERS)}")

    required = PARAMETERS[kind]
    missing = [key for key in required if key not in node]
    unknown = sorted(set(node) - set(required) - OPTIONAL_KEYS - {"dist"})
    if missing or unknown:
        raise ValueError(
            f"invalid distribution at {where} (dist={kind}): missing {missing}, unknown {unknown}; "
            f"expected {list(required)} plus optional {sorted(OPTIONAL_KEYS)}"
        )

    params = {key: node[key] for key in required}
    if kind == "choice":
        params["values"] = list(node["values"])
        if node.get("weights") is not None:
            params["weights"] = list(node["weights"])
    _check_ranges(kind, params, where)
    return Distribution(kind=kind, params=params, lower=node.get("min"), upper=node.get("max"))


def _check_ranges(kind: str, params: Mapping[str, Any], where: str) -> None:
    """Raise ValueError when a parameter is outside the range its distribution allows."""
    problem = ""
    if kind in ("uniform", "uniform_int") and params["low"] > params["high"]:
        problem = f"low {params['low']} is greater than high {params['high']}"
    elif kind == "normal" and params["sd"] < 0:
        problem = f"sd {params['sd']} is negative"
    elif kind == "lognormal" and (params["median"] <= 0 or params["sigma"] < 0):
        problem = f"median {params['median']} must be positive and sigma {params['sigma']} not negative"
    elif kind == "exponential" and params["mean"] <= 0:
        problem = f"mean {params['mean']} must be positive"
    elif kind == "geometric" and params["mean"] < 1:
        problem = f"mean {params['mean']} must be at least 1"
    elif kind == "choice" and not params["values"]:
        problem = "values is empty"
    elif kind == "choice" and "weights" in params and len(params["weights"]) != len(params["values"]):
        problem = f"{len(params['weights'])} weights for {len(params['values'])} values"
    if problem:
        raise ValueError(f"invalid distribution at {where}: {problem}")
