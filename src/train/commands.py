"""`botclick experiments` (training-data strategies) and `botclick suspects` (top presumed-human clients)."""

from __future__ import annotations

import logging
import shlex
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

import typer
from omegaconf import DictConfig

from src.config import PARAMS_FILE, command_config
from src.data.sources import LogFile, describe_files, discover_log_files

logger = logging.getLogger(__name__)


@contextmanager
def working_folder(workdir: Path | None, prefix: str) -> Iterator[Path]:
    """Yield `workdir` (created, kept afterwards), or a temp folder that is removed afterwards."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def resolve_log_files(paths: list[Path], cfg: DictConfig) -> list[LogFile]:
    """Return the log files of `paths`: files as given, folders expanded with `data.log_globs`."""
    files: list[LogFile] = []
    for path in paths:
        if path.is_dir():
            files += discover_log_files(path, list(cfg.data.log_globs), list(cfg.data.jsonl_globs))
        elif path.is_file():
            files += describe_files([path], list(cfg.data.jsonl_globs))
        else:
            raise typer.BadParameter(f"log path not found: {path}; pass an access-log file or a folder of logs", param_hint="--logs")
    return files


def command_line(name: str, options: list[tuple[str, object]], overrides: list[str]) -> str:
    """Return the command as a user would type it, for the report header."""
    words = ["botclick", name]
    for option, value in options:
        if value is not None:
            words += [option, str(value)]
    return shlex.join([*words, *overrides])


def experiments(
    logs_dir: Path = typer.Option(..., "--logs-dir", help="Folder of real access logs; files matching data.log_globs are read."),
    out: Path = typer.Option(Path("docs/experiments.md"), help="Markdown report; only its generated block is replaced."),
    overrides: Optional[List[str]] = typer.Argument(None, help="Hydra overrides, e.g. evaluate.strategy.seeds=[1]."),
    variant: Optional[List[str]] = typer.Option(None, "--variant", help="Run only this variant (repeatable); default evaluate.strategy.variants."),
    workdir: Optional[Path] = typer.Option(None, help="Keep the prepared data here; default a temp folder that is removed."),
    params_file: Path = typer.Option(Path(PARAMS_FILE), "--params", help="Composed params file, used when no override is given."),
) -> None:
    """Train every training-data strategy on the same data, log each to MLflow and write the report."""
    from src.train.experiments import run_experiments

    cfg = command_config(params_file, overrides or [])
    log_files = resolve_log_files([logs_dir], cfg)
    options = [("--logs-dir", logs_dir), ("--out", out), *[("--variant", name) for name in variant or []]]
    with working_folder(workdir, "botclick-experiments-") as folder:
        run_experiments(log_files, cfg, folder, out, command_line("experiments", options, overrides or []), list(variant) if variant else None)


def suspects(
    logs: List[Path] = typer.Option(..., "--logs", help="Real access-log file or folder of logs (repeatable)."),
    out: Path = typer.Option(Path("docs/top_presumed_human.md"), help="Markdown report to write."),
    overrides: Optional[List[str]] = typer.Argument(None, help="Hydra overrides, e.g. evaluate.suspects.clients=30."),
    champion: bool = typer.Option(False, "--champion", help="Score with bot-click@champion instead of out-of-fold models trained here."),
    workdir: Optional[Path] = typer.Option(None, help="Keep the prepared data here; default a temp folder that is removed."),
    params_file: Path = typer.Option(Path(PARAMS_FILE), "--params", help="Composed params file, used when no override is given."),
) -> None:
    """List the highest-scoring presumed-human clients of real logs, with evidence for a reviewer."""
    from src.train.suspects import write_suspects

    cfg = command_config(params_file, overrides or [])
    log_files = resolve_log_files(list(logs), cfg)
    options = [*[("--logs", path) for path in logs], ("--out", out), *([("--champion", "")] if champion else [])]
    command = command_line("suspects", options, overrides or []).replace(" --champion ''", " --champion")
    with working_folder(workdir, "botclick-suspects-") as folder:
        write_suspects(log_files, cfg, folder, out, command, use_champion=champion)


def register(app: typer.Typer) -> None:
    """Add `experiments` and `suspects` to the botclick app."""
    app.command("experiments")(experiments)
    app.command("suspects")(suspects)
