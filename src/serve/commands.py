"""`botclick serve` (the scoring service) and `botclick export-clicks` (click store to JSON lines)."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import List, Optional

import typer
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue

from src.config import ENV_VARIABLE, PARAMS_FILE, compose_config, load_params

logger = logging.getLogger(__name__)


def load_service_config(params_file: Path, overrides: list[str]) -> DictConfig:
    """Load params.yaml when it exists (as `botclick score` does), else compose conf/; then apply overrides.

    With `botclick --env NAME`, conf/ is composed for that environment instead, as for every
    command. Overrides are `key=value` strings such as `serve.poll_interval_s=5`.
    """
    env = os.environ.get(ENV_VARIABLE, "").strip()
    if env:
        return compose_config([f"env={env}", *overrides])
    if not params_file.is_file():
        return compose_config(overrides)
    cfg = load_params(params_file)
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    if "serve" not in cfg or "store" not in cfg.serve:
        raise typer.BadParameter(
            f"{params_file} has no serve.store settings; run `botclick params` to recompose it from conf/", param_hint="--params"
        )
    return cfg  # type: ignore[return-value]


def serve(
    overrides: Optional[List[str]] = typer.Argument(None, help="Config overrides, e.g. serve.poll_interval_s=5."),
    host: Optional[str] = typer.Option(None, help="Interface to listen on; default serve.host (127.0.0.1)."),
    port: Optional[int] = typer.Option(None, min=1, max=65535, help="TCP port (1-65535); default serve.port."),
    params_file: Path = typer.Option(Path(PARAMS_FILE), "--params", help="Composed params file; conf/ when it is missing."),
) -> None:
    """Run the scoring service (FastAPI on uvicorn) until SIGINT or SIGTERM."""
    import uvicorn

    from src.serve.app import create_app
    from src.serve.settings import ServeConfigError

    cfg = load_service_config(params_file, overrides or [])
    try:
        app = create_app(cfg)
    except (ServeConfigError, ConfigKeyError, ConfigAttributeError, MissingMandatoryValue) as err:
        logger.error("invalid service configuration: %s. Run `botclick params` if params.yaml is older than conf/.", err)
        raise typer.Exit(code=2) from err

    uvicorn.run(
        app,
        host=host or str(cfg.serve.host),
        port=port if port is not None else int(cfg.serve.port),
        log_level=str(cfg.serve.log_level),
        access_log=bool(cfg.serve.access_log),
        timeout_graceful_shutdown=int(cfg.serve.graceful_shutdown_timeout_s),
        # The client address comes in the click event, never from the connection, so the
        # X-Forwarded-For middleware would only add work to every request.
        proxy_headers=False,
    )


def export_clicks(
    out: Path = typer.Option(Path("logs/clicks/clicks.jsonl"), help="JSON-lines file to write."),
    since: Optional[datetime] = typer.Option(
        None, formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"],
        help="Export clicks from this time on (click time; UTC unless an offset is given).",
    ),
    params_file: Path = typer.Option(Path(PARAMS_FILE), "--params", help="Composed params file; conf/ when it is missing."),
) -> None:
    """Export the click store (serve.store.url) as JSON lines with pseudonymized clients."""
    from src.serve.click_store import export_click_store
    from src.serve.settings import StoreSettings

    cfg = load_service_config(params_file, [])
    store = StoreSettings.from_config(cfg.serve.store)
    start = since
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    count = export_click_store(store.url, store.table, out, start)
    typer.echo(f"wrote {count} clicks to {out}")


def register(app: typer.Typer) -> None:
    """Add the service commands to the `botclick` app."""
    app.command("serve")(serve)
    app.command("export-clicks")(export_clicks)
