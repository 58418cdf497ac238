"""Typed, checked settings of the scoring service, read from the `serve` config node."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

ALLOW, FLAG, BLOCK = "allow", "flag", "block"
DECISIONS: tuple[str, ...] = (ALLOW, FLAG, BLOCK)


class ServeConfigError(ValueError):
    """A `serve` setting with an invalid value; the message names the key."""


def _require(condition: bool, key: str, value: Any, expected: str) -> None:
    if not condition:
        raise ServeConfigError(f"invalid serve.{key}={value!r}: {expected}; fix it in conf/serve/default.yaml")


def _probability(value: Any, key: str) -> float:
    number = float(value)
    _require(0.0 <= number <= 1.0, key, value, "expected a probability between 0 and 1")
    return number


def _positive(value: Any, key: str) -> float:
    number = float(value)
    _require(number > 0, key, value, "expected a number above 0")
    return number


@dataclass(frozen=True)
class RuleSettings:
    """Rule fallback used while no model is loaded."""

    max_rate_per_min: float
    probability_when_matched: float
    decision_when_matched: str


@dataclass(frozen=True)
class StoreSettings:
    """Click store location and writer batching."""

    url: str
    table: str
    batch_size: int
    flush_interval_s: float
    queue_max: int
    spill_path: Path
    retry_interval_s: float
    shutdown_timeout_s: float
    sqlite_pragmas: dict[str, str]

    @classmethod
    def from_config(cls, store_cfg: DictConfig) -> StoreSettings:
        """Read `serve.store`; the environment variable named by `url_env` overrides `url`."""
        url = os.environ.get(str(store_cfg.url_env), "") or str(store_cfg.url)
        settings = cls(
            url=url,
            table=str(store_cfg.table),
            batch_size=int(store_cfg.batch_size),
            flush_interval_s=_positive(store_cfg.flush_interval_s, "store.flush_interval_s"),
            queue_max=int(store_cfg.queue_max),
            spill_path=Path(str(store_cfg.spill_path)),
            retry_interval_s=_positive(store_cfg.retry_interval_s, "store.retry_interval_s"),
            shutdown_timeout_s=_positive(store_cfg.shutdown_timeout_s, "store.shutdown_timeout_s"),
            sqlite_pragmas={str(k): str(v) for k, v in OmegaConf.to_container(store_cfg.sqlite_pragmas).items()},
        )
        _require(settings.batch_size >= 1, "store.batch_size", settings.batch_size, "expected at least 1")
        _require(settings.queue_max >= 1, "store.queue_max", settings.queue_max, "expected at least 1")
        _require(settings.table.isidentifier(), "store.table", settings.table, "expected a plain table name")
        return settings


@dataclass(frozen=True)
class ServeSettings:
    """Everything `create_app` reads from `serve`, checked once at startup."""

    host: str
    port: int
    max_body_bytes: int
    max_batch_events: int
    max_future_skew_s: float | None
    flag_threshold: float | None
    block_threshold: float
    top_reasons: int
    approximate_reasons: bool
    explain_decisions: frozenset[str]
    predict_threads: int
    gil_switch_interval_s: float
    max_clients: int
    poll_interval_s: float
    registry_http_timeout_s: int
    registry_http_max_retries: int
    ready_without_model: bool
    rules: RuleSettings
    admin_token_env: str
    store: StoreSettings
    latency_buckets_s: tuple[float, ...]

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ServeSettings:
        """Read and check `cfg.serve`; raises ServeConfigError naming the first invalid key."""
        serve = cfg.serve
        skew = serve.max_future_skew_s
        flag = serve.flag_threshold
        settings = cls(
            host=str(serve.host),
            port=int(serve.port),
            max_body_bytes=int(serve.max_body_bytes),
            max_batch_events=int(serve.max_batch_events),
            max_future_skew_s=None if skew is None else _positive(skew, "max_future_skew_s"),
            flag_threshold=None if flag is None else _probability(flag, "flag_threshold"),
            block_threshold=_probability(serve.block_threshold, "block_threshold"),
            top_reasons=int(serve.top_reasons),
            approximate_reasons=bool(serve.approximate_reasons),
            explain_decisions=frozenset(str(d) for d in serve.explain_decisions),
            predict_threads=int(serve.predict_threads),
            gil_switch_interval_s=_positive(serve.gil_switch_interval_s, "gil_switch_interval_s"),
            max_clients=int(serve.max_clients),
            poll_interval_s=_positive(serve.poll_interval_s, "poll_interval_s"),
            registry_http_timeout_s=int(serve.registry_http_timeout_s),
            registry_http_max_retries=int(serve.registry_http_max_retries),
            ready_without_model=bool(serve.ready_without_model),
            rules=_rule_settings(serve.rules),
            admin_token_env=str(serve.admin_token_env),
            store=StoreSettings.from_config(serve.store),
            latency_buckets_s=tuple(float(b) for b in serve.latency_buckets_s),
        )
        settings._check()
        return settings

    def _check(self) -> None:
        _require(self.max_body_bytes >= 1, "max_body_bytes", self.max_body_bytes, "expected at least 1 byte")
        _require(self.max_batch_events >= 1, "max_batch_events", self.max_batch_events, "expected at least 1")
        _require(self.top_reasons >= 0, "top_reasons", self.top_reasons, "expected 0 or more")
        unknown = sorted(self.explain_decisions - set(DECISIONS))
        _require(not unknown, "explain_decisions", sorted(self.explain_decisions), f"expected a subset of {list(DECISIONS)}")
        _require(self.predict_threads >= 1, "predict_threads", self.predict_threads, "expected at least 1")
        _require(self.max_clients >= 1, "max_clients", self.max_clients, "expected at least 1")
        if self.flag_threshold is not None:
            _require(
                self.block_threshold >= self.flag_threshold, "block_threshold", self.block_threshold,
                f"expected at least flag_threshold ({self.flag_threshold})",
            )


def _rule_settings(rules_cfg: DictConfig) -> RuleSettings:
    decision = str(rules_cfg.decision_when_matched)
    _require(decision in DECISIONS, "rules.decision_when_matched", decision, f"expected one of {list(DECISIONS)}")
    return RuleSettings(
        max_rate_per_min=_positive(rules_cfg.max_rate_per_min, "rules.max_rate_per_min"),
        probability_when_matched=_probability(rules_cfg.probability_when_matched, "rules.probability_when_matched"),
        decision_when_matched=decision,
    )
