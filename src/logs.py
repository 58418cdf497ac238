"""Logging setup shared by the stage CLIs, the console script and the service."""

from __future__ import annotations

import logging
import os

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str | None = None) -> None:
    """Send log records to stderr at `level`, or at BOTCLICK_LOG_LEVEL (default INFO)."""
    chosen = (level or os.environ.get("BOTCLICK_LOG_LEVEL", "INFO")).upper()
    logging.basicConfig(level=chosen, format=LOG_FORMAT)
