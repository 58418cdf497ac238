"""`botclick drift-check`, `promote`, `rollback` and `report daily`.

Exit codes are the values of `ExitCode` (src/monitor/settings.py); docs/monitoring.md
lists them. Every command reads the pipeline settings from params.yaml and the
`monitor` section from conf/, and `--set KEY=VALUE` overrides either.
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path
from typing import Callable, List, Optional, TypeVar

import pandas as pd
import typer
from omegaconf import DictConfig

from src.config import PARAMS_FILE
from src.monitor.settings import ExitCode, disable_telemetry, load_monitor_config

logger = logging.getLogger(__name__)

T = TypeVar("T")

LOGS_HELP = "Access-log or click-event file, or a quoted glob such as '/var/log/apache2/access.log*'. Repeat for several."
PARAMS_HELP = "Params file of the last pipeline run; conf/ is used when it is missing."
SET_HELP = "Config override KEY=VALUE, e.g. monitor.window.current_days=3. Repeat for several."


def expand_paths(patterns: List[str]) -> list[Path]:
    """Expand paths and globs into existing files, sorted per pattern and without duplicates.

    Raises FileNotFoundError naming a pattern that matches no file.
    """
    files: list[Path] = []
    for pattern in patterns:
        expanded = str(Path(pattern).expanduser())
        matches = sorted(glob.glob(expanded)) if glob.has_magic(expanded) else [expanded]
        found = [Path(match) for match in matches if Path(match).is_file()]
        if not found:
            raise FileNotFoundError(f"no file matches {pattern!r}; check the path, and quote globs so the shell does not expand them")
        files += found
    return list(dict.fromkeys(files))


def current_log_files(logs: Optional[List[str]], cfg: DictConfig) -> list[Path]:
    """Return the current logs: `--logs`, else `monitor.current_logs`, else the pipeline input.

    Raises FileNotFoundError when none of them names a file.
    """
    from src.monitor.retrain import input_files

    if logs:
        return expand_paths(logs)
    configured = [str(item) for item in cfg.monitor.current_logs]
    if configured:
        return expand_paths(configured)
    files = input_files(Path(str(cfg.paths.log_dir)), [str(item) for item in cfg.data.log_globs])
    if not files:
        raise FileNotFoundError(
            f"no current logs: pass --logs, set monitor.current_logs, or put logs in paths.log_dir ({cfg.paths.log_dir})"
        )
    logger.info("no --logs given; checking the pipeline input: %d files in %s", len(files), cfg.paths.log_dir)
    return files


def parse_time(text: Optional[str]) -> pd.Timestamp | None:
    """Parse an ISO 8601 time as UTC (naive times are taken as UTC); None stays None."""
    if text is None:
        return None
    try:
        parsed = pd.Timestamp(text)
    except ValueError as exc:
        raise ValueError(f"invalid time {text!r}: expected ISO 8601 such as 2026-11-21T00:00:00+00:00") from exc
    return parsed.tz_localize("UTC") if parsed.tzinfo is None else parsed.tz_convert("UTC")


def run_command(action: Callable[[], T]) -> T:
    """Run a command body and turn the expected errors into logged messages and exit codes."""
    from src.monitor.lock import LockTimeoutError
    from src.monitor.reference import ReferenceNotFoundError
    from src.monitor.registry_ops import NoPreviousChampionError
    from src.serve.champion import ChampionNotFoundError

    codes: list[tuple[type[BaseException], ExitCode]] = [
        (ChampionNotFoundError, ExitCode.NO_CHAMPION),
        (NoPreviousChampionError, ExitCode.NO_PREVIOUS_CHAMPION),
        (LockTimeoutError, ExitCode.LOCK_TIMEOUT),
        (ReferenceNotFoundError, ExitCode.INVALID_INPUT),
        (FileNotFoundError, ExitCode.INVALID_INPUT),
        (NotADirectoryError, ExitCode.INVALID_INPUT),
        (ValueError, ExitCode.INVALID_INPUT),
    ]
    try:
        return action()
    except tuple(error for error, _ in codes) as exc:
        code = next(code for error, code in codes if isinstance(exc, error))
        logger.error("%s (exit code %d)", exc, code)
        raise typer.Exit(int(code)) from None


def drift_check(
    logs: Optional[List[str]] = typer.Option(
        None, "--logs", help=f"Current traffic; default: monitor.current_logs, else the pipeline input. {LOGS_HELP}"
    ),
    reference_logs: Optional[List[str]] = typer.Option(
        None, "--reference-logs", help=f"Reference traffic instead of the champion's training sample. {LOGS_HELP}"
    ),
    ground_truth: Optional[List[Path]] = typer.Option(
        None, "--ground-truth", help="Simulator ground-truth CSV of the current logs, used as labels when retraining."
    ),
    retrain: bool = typer.Option(False, "--retrain/--no-retrain", help="On drift, retrain and promote a challenger only through the gate."),
    end: Optional[str] = typer.Option(None, "--end", help="End of the current window (ISO 8601, UTC); default: the latest request."),
    report_dir: Optional[Path] = typer.Option(None, "--report-dir", help="Output folder; default: <monitor.reports_dir>/<today, UTC>."),
    params_file: Path = typer.Option(Path(PARAMS_FILE), "--params", help=PARAMS_HELP),
    settings: Optional[List[str]] = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Compare recent traffic with the champion's training data; exit 0 no drift, 10 drift, 20 not enough data."""
    from src.monitor.job import DriftCheckRequest, run_drift_check

    def action() -> ExitCode:
        cfg = load_monitor_config(params_file, settings or [])
        request = DriftCheckRequest(
            logs=current_log_files(logs, cfg),
            reference_logs=expand_paths(reference_logs) if reference_logs else [],
            ground_truth=list(ground_truth or []),
            retrain=retrain,
            end=parse_time(end),
            report_dir=report_dir,
        )
        outcome = run_drift_check(request, cfg)
        logger.info("drift check: %s, decision %s; reports in %s", outcome.summary["status"], outcome.summary["decision"]["action"], outcome.report_dir)
        return outcome.exit_code

    raise typer.Exit(int(run_command(action)))


def latest_holdout(cfg_reports_dir: Path) -> Path:
    """Return the newest holdout.parquet written by a drift check, or raise FileNotFoundError."""
    found = sorted(cfg_reports_dir.glob("*/holdout.parquet"))
    if not found:
        raise FileNotFoundError(f"no holdout.parquet under {cfg_reports_dir}; pass --holdout, or run `botclick drift-check --retrain` first")
    return found[-1]


def promote(
    version: Optional[str] = typer.Argument(None, help="Model version to promote; default: the version under the challenger alias."),
    holdout: Optional[Path] = typer.Option(None, "--holdout", help="Held-out sessions parquet; default: the newest one of a drift check."),
    force: bool = typer.Option(False, "--force", help="Move the champion alias without the gate (logged with --reason)."),
    reason: str = typer.Option("", "--reason", help="Why, for the MLflow record."),
    params_file: Path = typer.Option(Path(PARAMS_FILE), "--params", help=PARAMS_HELP),
    settings: Optional[List[str]] = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Promote a model version through the gate; exit 0 promoted, 11 kept the champion."""
    from src.monitor.gate import run_gate
    from src.monitor.lock import monitor_lock
    from src.monitor.registry_ops import force_promote, registry_client, version_for_alias

    def action() -> ExitCode:
        cfg = load_monitor_config(params_file, settings or [])
        chosen = version or version_for_alias(registry_client(cfg), cfg, str(cfg.mlflow.challenger_alias))
        if chosen is None:
            raise ValueError(f"no version given and no {cfg.mlflow.registered_model}@{cfg.mlflow.challenger_alias}; pass the version to promote")
        with monitor_lock(cfg):
            if force:
                force_promote(cfg, chosen, reason)
                return ExitCode.OK
            source = holdout or latest_holdout(Path(str(cfg.monitor.reports_dir)))
            decision = run_gate(cfg, chosen, pd.read_parquet(source), str(source))
        logger.info("%s", decision.reason)
        return ExitCode.OK if decision.promote else ExitCode.NOT_PROMOTED

    raise typer.Exit(int(run_command(action)))


def rollback(
    to: Optional[str] = typer.Option(None, "--to", help="Version to return to; default: the previous champion."),
    reason: str = typer.Option("", "--reason", help="Why, for the MLflow record."),
    params_file: Path = typer.Option(Path(PARAMS_FILE), "--params", help=PARAMS_HELP),
    settings: Optional[List[str]] = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Move the champion alias back to the previous champion and log it; exit 0 on success."""
    from src.monitor.lock import monitor_lock
    from src.monitor.registry_ops import rollback as rollback_champion

    def action() -> ExitCode:
        cfg = load_monitor_config(params_file, settings or [])
        with monitor_lock(cfg):
            result = rollback_champion(cfg, to, reason)
        logger.info("champion is version %s again (was %s); MLflow run %s", result.to_version, result.from_version, result.run_id)
        return ExitCode.OK

    raise typer.Exit(int(run_command(action)))


def daily(
    logs: Optional[List[str]] = typer.Option(None, "--logs", help=f"Default: monitor.current_logs, else the pipeline input. {LOGS_HELP}"),
    date: Optional[str] = typer.Option(None, "--date", help="Day to report (YYYY-MM-DD, UTC); default: the day of the latest request."),
    params_file: Path = typer.Option(Path(PARAMS_FILE), "--params", help=PARAMS_HELP),
    settings: Optional[List[str]] = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Write the daily stats report (JSON and Markdown) under monitor.daily_dir."""
    from src.monitor.daily import build_daily_report, latest_drift, write_daily_report
    from src.monitor.sessions import LAST_SEEN, SCORE, session_scores, window_from_logs
    from src.serve.champion import load_champion

    def action() -> ExitCode:
        cfg = load_monitor_config(params_file, settings or [])
        day_start = parse_time(date)
        end = None if day_start is None else day_start + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
        champion = load_champion(cfg)
        window = window_from_logs("daily", current_log_files(logs, cfg), cfg, end, float(cfg.monitor.daily.days))
        window.sessions[SCORE] = session_scores(window.sessions, champion.booster, champion.meta.feature_names)
        report_end = end if end is not None else window.sessions[LAST_SEEN].max()
        daily_dir = Path(str(cfg.monitor.daily_dir))
        drift = latest_drift(Path(str(cfg.monitor.reports_dir)), daily_dir)
        write_daily_report(build_daily_report(window.sessions, champion, report_end, cfg, drift), daily_dir)
        return ExitCode.OK

    raise typer.Exit(int(run_command(action)))


def register(app: typer.Typer) -> None:
    """Add the monitoring commands to the `botclick` app."""
    disable_telemetry()
    app.command("drift-check")(drift_check)
    app.command("promote")(promote)
    app.command("rollback")(rollback)
    report_app = typer.Typer(help="Stats reports for people and machines.", no_args_is_help=True)
    report_app.command("daily")(daily)
    app.add_typer(report_app, name="report")
