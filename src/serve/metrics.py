"""Prometheus metrics of the scoring service, in a registry of their own per app."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from src.serve.settings import DECISIONS

PREFIX = "botclick"


class ServiceMetrics:
    """Counters, gauges and the latency histogram exposed on GET /metrics."""

    def __init__(self, latency_buckets_s: Sequence[float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._add_request_metrics(latency_buckets_s)
        self._add_model_metrics()
        self._add_store_metrics()

    def _add_request_metrics(self, latency_buckets_s: Sequence[float]) -> None:
        registry = self.registry
        self.http_requests = Counter(
            f"{PREFIX}_http_requests", "HTTP requests by route and status code.", ["route", "status"], registry=registry
        )
        self.latency = Histogram(
            f"{PREFIX}_request_latency_seconds",
            "Time from receiving a request to sending the last byte of its response, by route.",
            ["route"],
            buckets=list(latency_buckets_s),
            registry=registry,
        )
        self.clicks_scored = Counter(
            f"{PREFIX}_clicks_scored", "Scored clicks by decision.", ["decision"], registry=registry
        )
        for decision in DECISIONS:
            self.clicks_scored.labels(decision=decision)

    def _add_model_metrics(self) -> None:
        registry = self.registry
        self.fallback_clicks = Counter(
            f"{PREFIX}_fallback_clicks", "Clicks scored by the rule fallback because no model was loaded.",
            registry=registry,
        )
        self.model_info = Gauge(
            f"{PREFIX}_model_info", "1 for the model version in use; version is \"rules\" for the fallback.",
            ["version"], registry=registry,
        )
        self.model_swaps = Counter(f"{PREFIX}_model_swaps", "Model versions swapped in while serving.", registry=registry)
        self.registry_errors = Counter(
            f"{PREFIX}_registry_errors", "Failed registry polls and model loads.", ["kind"], registry=registry
        )
        for kind in ("poll", "load"):
            self.registry_errors.labels(kind=kind)

    def _add_store_metrics(self) -> None:
        registry = self.registry
        self.store_rows_written = Counter(
            f"{PREFIX}_store_rows_written", "Clicks inserted into the click store.", registry=registry
        )
        self.store_write_errors = Counter(
            f"{PREFIX}_store_write_errors", "Failed click store inserts (each is retried).", registry=registry
        )
        self.store_spilled = Counter(
            f"{PREFIX}_store_spilled", "Clicks appended to the spill file because serve.store.queue_max clicks were pending.",
            registry=registry,
        )
        self.store_lost = Counter(
            f"{PREFIX}_store_lost", "Clicks that could be neither queued nor spilled; each loss is logged.",
            registry=registry,
        )

    def add_gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """Expose a value that is read on every scrape, such as the store queue depth."""
        gauge = Gauge(f"{PREFIX}_{name}", documentation, registry=self.registry)
        gauge.set_function(read)

    def show_model_version(self, version: str) -> None:
        """Set the model info gauge to `version` only."""
        self.model_info.clear()
        self.model_info.labels(version=version).set(1)

    def render(self) -> bytes:
        """Return the metrics in the Prometheus text format."""
        return generate_latest(self.registry)
