"""Typed, validated access to one section of conf/simulate (a family, the site, the navigation)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from omegaconf import DictConfig, OmegaConf

from src.data.simulator.distributions import Distribution, parse_distribution


class Settings:
    """One config section with checked getters; `where` (such as `simulate.families.form_spam`) names it in errors."""

    def __init__(self, node: DictConfig | Mapping[str, Any], where: str) -> None:
        self._node: dict[str, Any] = _to_plain(node)
        self.where = where
        self._distributions: dict[str, Distribution] = {}
        self._weights: dict[str, tuple[list[str], np.ndarray]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._node

    def keys(self) -> list[str]:
        """Return the keys of the section in config order."""
        return list(self._node)

    def raw(self, key: str) -> Any:
        """Return the plain value stored under `key`; raise ValueError naming the key when it is missing."""
        if key not in self._node:
            raise ValueError(
                f"missing config key {self.where}.{key}; add it to conf/simulate/default.yaml, or regenerate "
                "a stale params.yaml with `botclick params`"
            )
        return self._node[key]

    def section(self, key: str) -> "Settings":
        """Return the nested mapping under `key` as Settings."""
        value = self.raw(key)
        if not isinstance(value, Mapping):
            raise ValueError(f"invalid {self.where}.{key}: expected a mapping, got {value!r}")
        return Settings(value, f"{self.where}.{key}")

    def dist(self, key: str) -> Distribution:
        """Return the distribution configured under `key`, parsed once."""
        if key not in self._distributions:
            value = self.raw(key)
            if not isinstance(value, Mapping):
                raise ValueError(f"invalid {self.where}.{key}: expected a distribution mapping, got {value!r}")
            self._distributions[key] = parse_distribution(value, f"{self.where}.{key}")
        return self._distributions[key]

    def prob(self, key: str) -> float:
        """Return the probability under `key`; raise ValueError unless it is within [0, 1]."""
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"invalid probability {self.where}.{key}={value!r}: expected a number from 0 to 1")
        return float(value)

    def number(self, key: str, minimum: float = 0.0) -> float:
        """Return the number under `key`; raise ValueError when it is below `minimum`."""
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise ValueError(f"invalid {self.where}.{key}={value!r}: expected a number >= {minimum}")
        return float(value)

    def choose(self, key: str, rng: np.random.Generator) -> str:
        """Draw one key of the weight mapping under `key`, such as `{search: 0.6, direct: 0.4}`."""
        if key not in self._weights:
            self._weights[key] = parse_weights(self.raw(key), f"{self.where}.{key}")
        names, probabilities = self._weights[key]
        return names[int(rng.choice(len(names), p=probabilities))]

    def weights(self, key: str) -> dict[str, float]:
        """Return the weight mapping under `key`, normalized to sum to 1."""
        names, probabilities = parse_weights(self.raw(key), f"{self.where}.{key}")
        return {name: float(p) for name, p in zip(names, probabilities, strict=True)}

    def validate(self) -> None:
        """Parse every distribution, weight mapping and `*_prob` value, so bad config fails before any output."""
        for key, value in self._node.items():
            if isinstance(value, Mapping) and "dist" in value:
                self.dist(key)
            elif key.endswith("_prob"):
                self.prob(key)


def parse_weights(value: Any, where: str) -> tuple[list[str], np.ndarray]:
    """Split a weight mapping into names and probabilities that sum to 1.

    Raises ValueError when the value is not a mapping, a weight is negative or all weights are zero.
    """
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"invalid weights at {where}: expected a non-empty mapping such as {{a: 0.7, b: 0.3}}")
    names = [str(name) for name in value]
    weights = np.asarray([float(value[name]) for name in value], dtype=float)
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"invalid weights at {where}: {dict(value)}; weights must be >= 0 with a positive sum")
    return names, weights / weights.sum()


def _to_plain(node: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Convert an OmegaConf node to plain Python containers, resolving interpolations."""
    if isinstance(node, DictConfig):
        plain = OmegaConf.to_container(node, resolve=True)
        assert isinstance(plain, dict)
        return {str(key): value for key, value in plain.items()}
    return dict(node)
