"""The `botclick` console script."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import List, Optional

import typer

from src.config import CONF_DIR, ENV_VARIABLE, PARAMS_FILE, command_config, compose_config, write_params
from src.logs import configure_logging

logger = logging.getLogger(__name__)

app = typer.Typer(help="Bot-click detection: pipeline helpers, batch scoring and the scoring service.", no_args_is_help=True)


@app.callback()
def _setup(
    log_level: str = typer.Option("INFO", help="Log level: DEBUG, INFO, WARNING or ERROR."),
    env: Optional[str] = typer.Option(
        None, "--env", help="Environment from conf/env (dev, test or prod): selects the stores and paths."
    ),
) -> None:
    configure_logging(log_level)
    if env:
        available = sorted(p.stem for p in (CONF_DIR / "env").glob("*.yaml"))
        if env not in available:
            raise typer.BadParameter(f"unknown environment {env!r}; choose one of {available}", param_hint="--env")
        os.environ[ENV_VARIABLE] = env


@app.command()
def params(
    overrides: Optional[List[str]] = typer.Argument(None, help="Hydra overrides, e.g. model.max_depth=4."),
    out: Path = typer.Option(Path(PARAMS_FILE), help="File to write."),
) -> None:
    """Compose conf/ into params.yaml, as `dvc exp run` does, for a plain `dvc repro`."""
    env = os.environ.get(ENV_VARIABLE)
    write_params(compose_config([*([f"env={env}"] if env else []), *(overrides or [])]), out)


@app.command()
def simulate(
    out_dir: Path = typer.Argument(Path("logs/simulated"), help="Folder for access.log and ground_truth.csv."),
    params_file: Path = typer.Option(Path(PARAMS_FILE), "--params", help="Composed params file."),
    seed: Optional[int] = typer.Option(None, help="Random seed; default simulate.seed from the config."),
    scale: Optional[float] = typer.Option(None, help="Multiplies every family's client count; default simulate.scale."),
) -> None:
    """Write simulated site traffic (combined log format) with ground truth."""
    from src.data.simulate import simulate as run_simulation

    cfg = command_config(params_file)
    summary = run_simulation(cfg, out_dir, seed=seed, scale=scale)
    logger.info("simulation written to %s: %s", out_dir, summary)


@app.command()
def score(
    logs: List[Path] = typer.Argument(..., help="Access-log or click-event files (plain, rotated or gzip)."),
    out: Path = typer.Option(Path("scores.csv"), help="CSV file to write, one row per session."),
    params_file: Path = typer.Option(Path(PARAMS_FILE), "--params", help="Composed params file."),
) -> None:
    """Score every client session of the given logs with the champion model."""
    from src.serve.batch_score import score_logs
    from src.serve.champion import load_champion

    cfg = command_config(params_file)
    table = score_logs(logs, load_champion(cfg), cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    logger.info("wrote %d session scores to %s", len(table), out)


# Command groups that live beside their code; each module has register(app).
COMMAND_MODULES = (
    "src.serve.commands",
    "src.monitor.commands",
    "src.review.commands",
    "src.release.commands",
    "src.train.commands",
)


def _register_command_modules() -> None:
    import importlib

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise
            continue
        module.register(app)


_register_command_modules()
