"""The release path: dry run, smoke test, promotion gate, and the champion move only when all pass.

Steps, in order:

1. `pipeline`: the whole pipeline on the environment's data; registers a candidate
   under `release.candidate_alias` (src/release/pipeline.py).
2. `smoke_test`: the scoring service with the candidate pinned, a replayed log,
   version, parity and latency checks (src/release/smoke.py).
3. `gate`: the monitor's promotion gate on the dry run's test-split sessions. When it
   passes, the gate moves `mlflow.champion_alias` to the candidate; nothing else does.

The first failed step stops the release. The champion alias is only written by a
passing gate, so a failure leaves it where it was. The whole release holds the
monitor lock, so no drift check, retrain, promotion or rollback runs meanwhile.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient
from omegaconf import DictConfig

from src.release.pipeline import DryRunResult, dry_run
from src.release.settings import ReleaseSettings
from src.release.smoke import smoke_test
from src.train.tracking import tracking_uri

logger = logging.getLogger(__name__)

PIPELINE, SMOKE_TEST, GATE = "pipeline", "smoke_test", "gate"
# Exit codes of `python -m src.release`: 0 promoted, one code per failed step.
EXIT_CODES = {PIPELINE: 3, SMOKE_TEST: 4, GATE: 5}
# Exit code when another release, drift check, promotion or rollback holds the monitor lock.
EXIT_LOCKED = 6


@dataclass
class StepOutcome:
    """One step of the release: whether it passed, how long it took, and what it found."""

    name: str
    passed: bool
    seconds: float
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReleaseReport:
    """The release's record, written as JSON to `release.report`."""

    env: str
    started_at: str
    finished_at: str = ""
    candidate_version: str | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    promoted: bool = False
    failed_step: str | None = None
    message: str = ""
    steps: list[StepOutcome] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when the candidate was promoted, else the code of the failed step."""
        return 0 if self.promoted else EXIT_CODES.get(self.failed_step or GATE, 1)


class StepFailed(Exception):
    """Raised inside a step to fail it with a message and no traceback in the log."""


def champion_of(cfg: DictConfig) -> str | None:
    """Return the version under the champion alias, or None when there is none."""
    from src.monitor.registry_ops import current_champion

    return current_champion(MlflowClient(tracking_uri=tracking_uri(cfg)), cfg)


def run_step(report: ReleaseReport, name: str, action: Callable[[], tuple[str, dict[str, Any]]]) -> bool:
    """Run one step, add its outcome to the report, and return whether it passed."""
    started = time.monotonic()
    try:
        message, detail = action()
    except StepFailed as err:
        passed, message, detail = False, str(err), {}
    except Exception as err:  # noqa: BLE001 - any error fails the step; the log keeps the traceback
        logger.exception("release step %s raised", name)
        passed, message, detail = False, f"{type(err).__name__}: {err}", {}
    else:
        passed = True
    report.steps.append(StepOutcome(name, passed, round(time.monotonic() - started, 3), message, detail))
    if not passed:
        report.failed_step = name
        report.message = f"release stopped at step {name}: {message}"
    log = logger.info if passed else logger.error
    log("release step %s %s in %.1f s: %s", name, "passed" if passed else "FAILED", report.steps[-1].seconds, message)
    return passed


def gate_step(cfg: DictConfig, candidate: DryRunResult) -> tuple[str, dict[str, Any]]:
    """Run the promotion gate, which moves the champion alias itself when the candidate passes."""
    from src.monitor.gate import run_gate

    decision = run_gate(cfg, candidate.version, candidate.holdout, f"release dry run, test split of {cfg.paths.features}")
    if not decision.promote:
        raise StepFailed(decision.reason)
    return decision.reason, decision.to_dict()


def release(cfg: DictConfig) -> ReleaseReport:
    """Run the release in the environment of `cfg` and return its report (also written to `release.report`)."""
    from src.monitor.lock import monitor_lock

    settings = ReleaseSettings.from_config(cfg)
    report = ReleaseReport(env=str(cfg.env.name), started_at=_now())
    with monitor_lock(cfg):
        report.champion_before = champion_of(cfg)
        _run_steps(cfg, settings, report)
        report.champion_after = champion_of(cfg)

    report.promoted = report.failed_step is None
    if report.promoted:
        report.message = f"version {report.candidate_version} is now the champion (was {report.champion_before})"
    elif report.champion_after != report.champion_before:
        logger.error("the champion moved from %s to %s during a failed release", report.champion_before, report.champion_after)
    report.finished_at = _now()
    write_report(report, settings)
    return report


def _run_steps(cfg: DictConfig, settings: ReleaseSettings, report: ReleaseReport) -> None:
    results: dict[str, Any] = {}

    def pipeline() -> tuple[str, dict[str, Any]]:
        results["candidate"] = candidate = dry_run(cfg, settings)
        report.candidate_version = candidate.version
        detail = {"version": candidate.version, "run_id": candidate.run_id, "holdout_sessions": len(candidate.holdout), **candidate.outputs}
        return f"candidate version {candidate.version} registered as @{settings.candidate_alias}", detail

    def smoke() -> tuple[str, dict[str, Any]]:
        outcome = smoke_test(cfg, settings, results["candidate"].version)
        return f"service served version {outcome.version}: parity and p99 {outcome.p99_latency_ms:.1f} ms passed", asdict(outcome)

    if not run_step(report, PIPELINE, pipeline):
        return
    if run_step(report, SMOKE_TEST, smoke) and run_step(report, GATE, lambda: gate_step(cfg, results["candidate"])):
        _tag_candidate(cfg, report.candidate_version, "promoted")
        return
    _tag_candidate(cfg, report.candidate_version, f"failed_{report.failed_step}")


def _tag_candidate(cfg: DictConfig, version: str | None, status: str) -> None:
    if version is None:
        return
    client = MlflowClient(tracking_uri=tracking_uri(cfg))
    client.set_model_version_tag(str(cfg.mlflow.registered_model), version, "release_status", status)


def write_report(report: ReleaseReport, settings: ReleaseSettings) -> None:
    """Write the report as JSON to `release.report`."""
    settings.report.parent.mkdir(parents=True, exist_ok=True)
    settings.report.write_text(json.dumps(asdict(report), indent=2, default=str), encoding="utf-8")
    logger.info("release report written to %s", settings.report)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
