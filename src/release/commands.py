"""`botclick release` and `python -m src.release`: run the release path in one environment.

Exit codes: 0 the candidate is the new champion, 2 invalid arguments, 3 the pipeline
dry run failed, 4 the smoke test failed, 5 the promotion gate rejected the candidate,
6 the monitor lock stayed taken by another release, drift check, promotion or rollback.
"""

from __future__ import annotations

import logging
import os
from typing import List, Optional

import typer

from src.config import CONF_DIR, ENV_VARIABLE

logger = logging.getLogger(__name__)

DEFAULT_ENV = "test"


def release(
    overrides: Optional[List[str]] = typer.Argument(None, help="Hydra overrides, e.g. release.smoke.p99_latency_ms=200."),
    env: Optional[str] = typer.Option(
        None, "--env", help=f"Environment from conf/env whose stores the release uses; default --env of botclick, else {DEFAULT_ENV}."
    ),
) -> None:
    """Dry-run the pipeline, smoke-test the service with the candidate, run the gate; promote only when all pass."""
    from src.monitor.lock import LockTimeoutError
    from src.release.orchestrate import EXIT_LOCKED
    from src.release.orchestrate import release as run_release
    from src.release.settings import compose_release_config

    chosen = env or os.environ.get(ENV_VARIABLE, "").strip() or DEFAULT_ENV
    available = sorted(path.stem for path in (CONF_DIR / "env").glob("*.yaml"))
    if chosen not in available:
        raise typer.BadParameter(f"unknown environment {chosen!r}; choose one of {available}", param_hint="--env")
    os.environ[ENV_VARIABLE] = chosen

    try:
        report = run_release(compose_release_config(chosen, overrides or []))
    except LockTimeoutError as err:
        typer.echo(f"release FAILED before it started: {err}. The champion is unchanged.", err=True)
        raise typer.Exit(EXIT_LOCKED) from err
    for step in report.steps:
        typer.echo(f"{step.name:<11} {'passed' if step.passed else 'FAILED':<7} {step.seconds:8.1f} s  {step.message}")
    if report.promoted:
        typer.echo(f"release passed: {report.message}")
    else:
        typer.echo(f"release FAILED: {report.message}. The champion stays at version {report.champion_after}.", err=True)
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    """Add the `release` command to the `botclick` app."""
    app.command("release")(release)
