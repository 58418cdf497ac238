"""`botclick review`: label queued sessions in the terminal or on a loopback web page.

    botclick review queue --from scores.csv     queue flagged and uncertain sessions of a score table
    botclick review queue --click-store         queue them from the scoring service's click store
    botclick review                             review in the terminal (b bot, h human, s skip, q quit)
    botclick review --web                       review on http://127.0.0.1:<review.web.port>/
    botclick review status                      count queued, reviewed, skipped and pending sessions
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import List, Optional

import typer
from omegaconf import DictConfig
from rich.console import Console

from src.config import PARAMS_FILE, command_config
from src.review.desk import ReviewDesk
from src.review.settings import ReviewSettings

logger = logging.getLogger(__name__)

review_app = typer.Typer(help="Human review of flagged sessions; labels go to data/labels/reviews.csv.")

PARAMS_OPTION = typer.Option(Path(PARAMS_FILE), "--params", help="Composed params file; conf/ when it is missing or --env is set.")


def _settings(params_file: Path) -> tuple[DictConfig, ReviewSettings]:
    cfg = command_config(params_file)
    return cfg, ReviewSettings.from_config(cfg)


@review_app.callback(invoke_without_command=True)
def review(
    ctx: typer.Context,
    web: bool = typer.Option(False, "--web", help="Serve the review page instead of the terminal review."),
    reviewer: Optional[str] = typer.Option(None, help="Name written to reviews.csv; default review.reviewer_env, else the OS user."),
    include_skipped: bool = typer.Option(False, "--include-skipped", help="Show sessions skipped earlier again."),
    port: Optional[int] = typer.Option(None, help="TCP port of the review page; default review.web.port."),
    params_file: Path = PARAMS_OPTION,
) -> None:
    """Review queued sessions one at a time (terminal, or --web for the browser)."""
    if ctx.invoked_subcommand is not None:
        return
    _, settings = _settings(params_file)
    desk = ReviewDesk(settings, settings.reviewer(reviewer), include_skipped)
    if web:
        serve_review_page(desk, settings, port)
        return

    from src.review.terminal import review_in_terminal

    result = review_in_terminal(desk, Console())
    logger.info("terminal review ended (%s): labelled %s, skipped %d", result.stopped_by, result.labelled, result.skipped)


def serve_review_page(desk: ReviewDesk, settings: ReviewSettings, port: int | None) -> None:
    """Run the review page on the configured loopback host until interrupted."""
    import uvicorn

    from src.review.web import create_review_app, generate_token, is_loopback

    web = settings.web
    if not is_loopback(web.host):
        raise typer.BadParameter(f"review.web.host={web.host!r} is not a loopback address; use 127.0.0.1")
    token = os.environ.get(web.token_env, "")
    chosen_port = web.port if port is None else port
    console = Console()
    if token:
        if len(token) < web.min_token_chars:
            raise typer.BadParameter(f"{web.token_env} has {len(token)} characters; use at least {web.min_token_chars}")
        console.print(f"Review page: http://{web.host}:{chosen_port}/?token=<value of {web.token_env}>")
    else:
        token = generate_token()
        console.print(f"Review page (token generated for this run): http://{web.host}:{chosen_port}/?token={token}")
    app = create_review_app(desk, token, web.cookie_name)
    uvicorn.run(app, host=web.host, port=chosen_port, log_level=web.log_level, access_log=False)


@review_app.command("queue")
def queue(
    scores: Optional[Path] = typer.Option(None, "--from", help="Score table written by `botclick score`."),
    logs: Optional[List[Path]] = typer.Option(None, "--logs", help="The scored log files, re-collected for evidence; default paths.events."),
    click_store: bool = typer.Option(False, "--click-store", help="Also queue sessions from the scoring service's click store."),
    since: Optional[datetime] = typer.Option(
        None, formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"],
        help="Click store only: clicks from this time on (UTC unless an offset is given).",
    ),
    model_version: Optional[str] = typer.Option(None, help="Model version that wrote the score table; default the champion's."),
    params_file: Path = PARAMS_OPTION,
) -> None:
    """Queue flagged and uncertain sessions, with their evidence, for review."""
    from src.review.build import queue_from_click_store, queue_from_scores

    if scores is None and not click_store:
        raise typer.BadParameter("nothing to queue from; pass --from SCORES.csv, --click-store or both")
    cfg, settings = _settings(params_file)
    if scores is not None:
        queue_from_scores(cfg, settings, scores, logs or [], model_version)
    if click_store:
        start = since
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        queue_from_click_store(cfg, settings, start)
    _print_status(settings)


@review_app.command("status")
def status(params_file: Path = PARAMS_OPTION) -> None:
    """Count queued, reviewed, skipped and pending sessions."""
    _, settings = _settings(params_file)
    _print_status(settings)


@review_app.command("clear-skips")
def clear_skips(params_file: Path = PARAMS_OPTION) -> None:
    """Make every skipped session pending again."""
    from src.review.queue import ReviewQueue

    _, settings = _settings(params_file)
    cleared = ReviewQueue(settings.queue_path).clear_skips()
    typer.echo(f"{cleared} skipped sessions are pending again")


def _print_status(settings: ReviewSettings) -> None:
    from src.review.queue import ReviewQueue
    from src.review.reviews import reviewed_session_ids

    counts = ReviewQueue(settings.queue_path).counts(reviewed_session_ids(settings.reviews_path))
    typer.echo(f"review queue {settings.queue_path}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def register(app: typer.Typer) -> None:
    """Add the `review` command group to the `botclick` app."""
    app.add_typer(review_app, name="review")
