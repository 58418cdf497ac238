"""Release step 2: smoke-test the scoring service with the candidate model.

The service is started with the candidate pinned, a log is replayed through
/v1/score/batch, and three checks must pass: every result comes from the candidate
version (no rule fallback), each session's probability at its last request matches
`score_logs` within `release.smoke.parity_abs_tolerance`, and the 99th percentile of
the request round trips is within `release.smoke.p99_latency_ms`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from src.release.replay import Replay, batches, build_replay
from src.release.service_process import RunningService, SmokeTestError, running_service, wait_until_serving
from src.release.settings import ReleaseSettings, SmokeSettings
from src.serve.batch_score import score_logs
from src.serve.champion import load_version

logger = logging.getLogger(__name__)

BATCH_ROUTE = "/v1/score/batch"
# Sessions named in a parity failure message.
SHOWN_MISMATCHES = 5


@dataclass
class SmokeResult:
    """Numbers of a passed smoke test, for the release report."""

    version: str
    events: int
    sessions: int
    requests: int
    startup_s: float
    p99_latency_ms: float
    max_abs_difference: float
    replay_skipped: dict[str, int] = field(default_factory=dict)


def replay_through_service(service: RunningService, replay: Replay, smoke: SmokeSettings) -> tuple[list[dict[str, Any]], list[float]]:
    """Send the replay in batches; return every result in order and each request's round trip in milliseconds."""
    results: list[dict[str, Any]] = []
    latencies_ms: list[float] = []
    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=smoke.request_timeout_s) as client:
        for number, body in enumerate(batches(replay.events, smoke.batch_size), start=1):
            started = time.perf_counter()
            try:
                response = client.post(service.base_url + BATCH_ROUTE, content=body, headers=headers)
            except httpx.TransportError as err:
                raise SmokeTestError(f"request {number} to {BATCH_ROUTE} failed: {type(err).__name__}: {err}") from err
            latencies_ms.append((time.perf_counter() - started) * 1000.0)
            if response.status_code != 200:
                raise SmokeTestError(f"request {number} to {BATCH_ROUTE} got HTTP {response.status_code}: {response.text[:500]}")
            results.extend(response.json()["results"])
    return results, latencies_ms


def check_versions(results: list[dict[str, Any]], version: str) -> None:
    """Raise SmokeTestError unless every result was scored by `version` without the rule fallback."""
    other = sorted({str(r.get("model_version")) for r in results if str(r.get("model_version")) != version or r.get("fallback")})
    if other:
        raise SmokeTestError(f"the service scored with model versions {other}, not only the candidate {version}")


def check_parity(results: list[dict[str, Any]], expected: pd.DataFrame, tolerance: float) -> float:
    """Compare each session's last service probability with the batch score; return the largest difference.

    Raises SmokeTestError naming missing sessions or the worst mismatches.
    """
    served = pd.DataFrame({"session_id": [r["session_id"] for r in results], "served": [float(r["bot_probability"]) for r in results]})
    last = served.drop_duplicates("session_id", keep="last").set_index("session_id")["served"]
    batch = expected.set_index("session_id")["bot_probability"].astype(float)

    only_service, only_batch = sorted(set(last.index) - set(batch.index)), sorted(set(batch.index) - set(last.index))
    if only_service or only_batch:
        raise SmokeTestError(
            f"parity failed: sessions differ between the service and `botclick score`: {len(only_service)} only in the service "
            f"(e.g. {only_service[:SHOWN_MISMATCHES]}), {len(only_batch)} only in the batch scores (e.g. {only_batch[:SHOWN_MISMATCHES]})"
        )
    difference = (last - batch.reindex(last.index)).abs()
    worst = difference[difference > tolerance].sort_values(ascending=False)
    if not worst.empty:
        examples = ", ".join(f"{sid}: service {last[sid]:.6f} vs batch {batch[sid]:.6f}" for sid in worst.index[:SHOWN_MISMATCHES])
        raise SmokeTestError(
            f"parity failed: {len(worst)} of {len(last)} sessions differ by more than {tolerance:g} "
            f"(release.smoke.parity_abs_tolerance): {examples}"
        )
    return float(difference.max()) if len(difference) else 0.0


def check_latency(latencies_ms: list[float], bound_ms: float) -> float:
    """Return the 99th percentile round trip; raise SmokeTestError when it exceeds `bound_ms`."""
    p99 = float(np.percentile(latencies_ms, 99))
    if p99 > bound_ms:
        raise SmokeTestError(
            f"latency failed: p99 of {len(latencies_ms)} {BATCH_ROUTE} requests is {p99:.1f} ms, "
            f"above release.smoke.p99_latency_ms = {bound_ms:g} ms"
        )
    return p99


def smoke_test(cfg: DictConfig, settings: ReleaseSettings, version: str) -> SmokeResult:
    """Run the whole smoke test for `version`; raise SmokeTestError on the first failed check."""
    smoke = settings.smoke
    with tempfile.TemporaryDirectory(prefix="botclick-replay-") as tmp:
        replay = build_replay(cfg, smoke.replay_max_lines, Path(tmp))
        if not replay.events:
            raise SmokeTestError(f"no replayable line in {cfg.paths.log_dir}; skipped lines by reason: {replay.skipped}")
        expected = score_logs([replay.path], load_version(cfg, version), cfg)
        with running_service(cfg, settings, settings.workdir / "smoke") as service:
            startup_s = wait_until_serving(service, version, smoke)
            results, latencies_ms = replay_through_service(service, replay, smoke)

    check_versions(results, version)
    largest = check_parity(results, expected, smoke.parity_abs_tolerance)
    p99 = check_latency(latencies_ms, smoke.p99_latency_ms)
    logger.info(
        "smoke test passed: %d events, %d sessions, parity within %.2g, p99 %.1f ms over %d requests",
        len(results), len(expected), largest, p99, len(latencies_ms),
    )
    return SmokeResult(version, len(results), len(expected), len(latencies_ms), startup_s, p99, largest, replay.skipped)
