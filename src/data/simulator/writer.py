"""Write simulated requests as Apache combined-format lines and clients as the ground-truth CSV."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from operator import attrgetter
from pathlib import Path
from typing import Iterable, Mapping

from src.data.simulator.world import Client, Request

# English month abbreviations, as Apache writes them whatever the locale.
MONTHS: tuple[str, ...] = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
GROUND_TRUTH_COLUMNS: list[str] = ["ip", "user_agent", "family", "is_bot", "automated"]


def format_offset(tz: timezone) -> str:
    """Return a timezone's UTC offset as Apache writes it, such as +0000 or -0530."""
    offset = tz.utcoffset(None)
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{rest:02d}"


def format_timestamp(ts: float, tz: timezone) -> str:
    """Format Unix seconds as `dd/Mon/yyyy:HH:MM:SS +zzzz`, truncated to whole seconds."""
    moment = datetime.fromtimestamp(int(ts), tz=tz)
    return (
        f"{moment.day:02d}/{MONTHS[moment.month - 1]}/{moment.year:04d}:"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} {format_offset(tz)}"
    )


def format_line(request: Request, tz: timezone) -> str:
    """Format one request as an Apache combined log line (without the newline)."""
    size = "-" if request.size is None else str(request.size)
    return (
        f'{request.ip} - - [{format_timestamp(request.ts, tz)}] '
        f'"{request.method} {request.path} {request.protocol}" {request.status} {size} '
        f'"{request.referrer}" "{request.user_agent}"'
    )


def write_access_log(requests: Iterable[Request], path: Path, tz: timezone) -> int:
    """Write requests sorted by time (ties keep generation order) to `path`; return the line count.

    The file is written under a temporary name and renamed at the end, so a failed run leaves no half-written log.
    """
    ordered = sorted(requests, key=attrgetter("ts"))
    partial = _partial_path(path)
    with partial.open("w", encoding="utf-8", newline="\n") as handle:
        for request in ordered:
            handle.write(format_line(request, tz))
            handle.write("\n")
    partial.replace(path)
    return len(ordered)


def write_ground_truth(clients: Iterable[Client], path: Path, policy: Mapping[str, tuple[int, int]]) -> int:
    """Write one row per client with its family and the family's (is_bot, automated) flags; return the row count."""
    rows = 0
    partial = _partial_path(path)
    with partial.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(GROUND_TRUTH_COLUMNS)
        for client in clients:
            is_bot, automated = policy[client.family]
            writer.writerow([client.ip, client.user_agent, client.family, is_bot, automated])
            rows += 1
    partial.replace(path)
    return rows


def _partial_path(path: Path) -> Path:
    """Create the parent folder of `path` and return the temporary name it is written under.

    The name (`access_log.partial` for `access.log`) matches none of the collect stage's log globs.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(path.name.replace(".", "_") + ".partial")
