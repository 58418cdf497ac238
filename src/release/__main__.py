"""Run the release path: `python -m src.release [--env test] [OVERRIDES...]` (see src/release/commands.py)."""

import typer

from src.logs import configure_logging
from src.release.commands import release

if __name__ == "__main__":
    configure_logging()
    typer.run(release)
