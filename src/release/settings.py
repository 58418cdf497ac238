"""Typed settings of the release path, read from the `release` config group."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig

from src.config import compose_config
from src.review.settings import config_group

class ReleaseConfigError(ValueError):
    """A `release` setting with an invalid value; the message names the key."""


def compose_release_config(env: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose conf/ for `env`, then apply `overrides` such as `release.smoke.port=0`."""
    return compose_config([f"env={env}", *overrides])


def _require(condition: bool, key: str, value: Any, expected: str) -> None:
    if not condition:
        raise ReleaseConfigError(f"invalid release.{key}={value!r}: {expected}; fix it in conf/release/default.yaml")


@dataclass(frozen=True)
class SmokeSettings:
    """Start, replay and pass criteria of the smoke test of the scoring service."""

    host: str
    port: int
    startup_timeout_s: float
    ready_probe_timeout_s: float
    shutdown_timeout_s: float
    request_timeout_s: float
    replay_max_lines: int
    batch_size: int
    parity_abs_tolerance: float
    p99_latency_ms: float
    service_overrides: tuple[str, ...]
    log_tail_lines: int


@dataclass(frozen=True)
class ReleaseSettings:
    """Everything the release reads from `release`, checked once."""

    candidate_alias: str
    workdir: Path
    report: Path
    simulate_when_missing: bool
    simulate_scale: float | None
    smoke: SmokeSettings

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ReleaseSettings:
        """Read `cfg.release`."""
        release = config_group(cfg, "release")
        smoke = release.smoke
        scale = release.pipeline.simulate_scale
        settings = cls(
            candidate_alias=str(release.candidate_alias),
            workdir=Path(str(release.workdir)),
            report=Path(str(release.report)),
            simulate_when_missing=bool(release.pipeline.simulate_when_missing),
            simulate_scale=None if scale is None else float(scale),
            smoke=SmokeSettings(
                host=str(smoke.host), port=int(smoke.port), startup_timeout_s=float(smoke.startup_timeout_s),
                ready_probe_timeout_s=float(smoke.ready_probe_timeout_s),
                shutdown_timeout_s=float(smoke.shutdown_timeout_s), request_timeout_s=float(smoke.request_timeout_s),
                replay_max_lines=int(smoke.replay_max_lines), batch_size=int(smoke.batch_size),
                parity_abs_tolerance=float(smoke.parity_abs_tolerance), p99_latency_ms=float(smoke.p99_latency_ms),
                service_overrides=tuple(str(o) for o in smoke.service_overrides), log_tail_lines=int(smoke.log_tail_lines),
            ),
        )
        settings._check(cfg)
        return settings

    def _check(self, cfg: DictConfig) -> None:
        alias = self.candidate_alias
        reserved = {str(cfg.mlflow.champion_alias), str(cfg.mlflow.challenger_alias)}
        _require(alias.replace("_", "").replace("-", "").isalnum(), "candidate_alias", alias, "expected letters, digits, - or _")
        _require(alias not in reserved, "candidate_alias", alias, f"expected an alias other than {sorted(reserved)}")
        smoke = self.smoke
        _require(0 <= smoke.port <= 65535, "smoke.port", smoke.port, "expected 0 (any free port) to 65535")
        _require(smoke.replay_max_lines >= 1, "smoke.replay_max_lines", smoke.replay_max_lines, "expected at least 1")
        _require(smoke.batch_size >= 1, "smoke.batch_size", smoke.batch_size, "expected at least 1")
        _require(smoke.parity_abs_tolerance >= 0, "smoke.parity_abs_tolerance", smoke.parity_abs_tolerance, "expected 0 or more")
        _require(smoke.p99_latency_ms > 0, "smoke.p99_latency_ms", smoke.p99_latency_ms, "expected a number above 0")
        for key in ("startup_timeout_s", "ready_probe_timeout_s", "shutdown_timeout_s", "request_timeout_s"):
            _require(getattr(smoke, key) > 0, f"smoke.{key}", getattr(smoke, key), "expected a number of seconds above 0")
        if self.simulate_scale is not None:
            _require(self.simulate_scale > 0, "pipeline.simulate_scale", self.simulate_scale, "expected null or a number above 0")
