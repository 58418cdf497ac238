"""JSON and Markdown rendering shared by the drift summary and the daily report."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd


def json_ready(value: Any) -> Any:
    """Return `value` with NaN and infinity as None and numpy or pandas scalars as Python values."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def escape_cell(value: Any) -> str:
    """Return a Markdown table cell: pipes escaped, line breaks as spaces."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Return the lines of a Markdown table."""
    lines = ["| " + " | ".join(escape_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(escape_cell(cell) for cell in row) + " |" for row in rows]
    return lines


def percent(share: float | None) -> str:
    """Format a share as a percentage with one decimal, or "n/a"."""
    return "n/a" if share is None else f"{share * 100:.1f}%"


def number(value: float | None, digits: int = 4) -> str:
    """Format a number with `digits` significant digits, or "n/a"."""
    return "n/a" if value is None else f"{value:.{digits}g}"
