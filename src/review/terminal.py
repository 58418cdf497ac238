"""Keyboard-driven review in the terminal: one session at a time, one key per decision.

Keys: the first letter of each review label (b = bot, h = human), s = skip, q = quit.
The loop reads keys through an injected function, so a test can script the keys and
record the output with a rich Console.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from src.review.desk import SKIP, ReviewDesk
from src.review.queue import ReviewItem

logger = logging.getLogger(__name__)

QUIT = "quit"
SKIP_KEY, QUIT_KEY = "s", "q"

KeyReader = Callable[[], str]


@dataclass
class TerminalResult:
    """Outcome of one terminal review: labels written per label, sessions skipped, and the reason it stopped."""

    labelled: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    stopped_by: str = ""


def key_map(labels: list[str]) -> dict[str, str]:
    """Map keys to actions: each label's first letter, plus s (skip) and q (quit).

    Raises ValueError when two labels start with the same letter or one starts with s or q.
    """
    keys: dict[str, str] = {}
    for label in labels:
        key = label[:1].lower()
        if not key or key in keys or key in (SKIP_KEY, QUIT_KEY):
            raise ValueError(f"review label {label!r} needs a key of its own; rename it in labels.review_labels")
        keys[key] = label
    return {**keys, SKIP_KEY: SKIP, QUIT_KEY: QUIT}


def read_key_from_stdin() -> str:
    """Read one key press from a terminal, or one line from piped input ("" at end of input)."""
    if sys.stdin.isatty():
        import click

        return click.getchar()
    return sys.stdin.readline().strip()[:1]


def cut(text: str, limit: int) -> str:
    """Return `text` cut to `limit` characters, ending with "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_item(item: ReviewItem, limit_requests: int, limit_chars: int, progress: dict[str, int]) -> Group:
    """Render one session's evidence: score, reasons, client, and its requests."""
    header = Table.grid(padding=(0, 2))
    header.add_row("session", item.session_id)
    header.add_row("score", f"{item.bot_probability:.3f} ({item.decision}, {item.reason}, model version {item.model_version})")
    header.add_row("client", f"{item.client_id} (pseudonym)")
    header.add_row("user agent", cut(item.user_agent, limit_chars) or "(none)")
    header.add_row("time", f"{item.session_start} to {item.session_end}, {item.n_requests} requests")
    reasons = Text("\n".join(f"- {r}" for r in item.top_reasons) or "(no reasons recorded)")

    requests = Table("time", "method", "path", "status", "referrer", "kind", expand=True)
    for request in item.requests[:limit_requests]:
        status = "" if request["status"] is None else str(request["status"])
        requests.add_row(
            request["ts"], request["method"], cut(request["path"], limit_chars), status,
            cut(request["referrer"], limit_chars), request["kind"],
        )  # fmt: skip
    hidden = item.n_requests - min(len(item.requests), limit_requests)
    footer = Text(f"… {hidden} more requests not shown" if hidden > 0 else "")
    title = f"pending {progress['pending']}, reviewed {progress['reviewed']}, skipped {progress['skipped']}"
    return Group(Panel(header, title=title), Panel(reasons, title="top reasons"), requests, footer)


def review_in_terminal(desk: ReviewDesk, console: Console, read_key: KeyReader = read_key_from_stdin) -> TerminalResult:
    """Show queued sessions one at a time and act on each key until the queue is done or q is pressed.

    A session skipped in this run is not shown again in this run. End of input quits.
    """
    keys = key_map(desk.labels)
    prompt = "  ".join(f"[bold]{key}[/bold] {action}" for key, action in keys.items())
    result = TerminalResult()
    passed: set[str] = set()
    while True:
        item = desk.next_item(exclude=passed)
        if item is None:
            console.print("No session left to review.")
            result.stopped_by = "done"
            return result
        settings = desk.settings
        console.print(render_item(item, settings.terminal_requests_shown, settings.max_text_chars, desk.progress()))
        action = _read_action(console, read_key, keys, prompt)
        if action == QUIT:
            result.stopped_by = "quit"
            return result
        passed.add(item.session_id)
        _apply(desk, item, action, console, result)


def _read_action(console: Console, read_key: KeyReader, keys: dict[str, str], prompt: str) -> str:
    """Prompt until a known key is read; end of input counts as quit."""
    while True:
        console.print(prompt)
        key = read_key()
        if key == "":
            return QUIT
        action = keys.get(key.lower())
        if action is not None:
            return action
        console.print(f"Unknown key {key!r}; press one of {', '.join(keys)}.")


def _apply(desk: ReviewDesk, item: ReviewItem, action: str, console: Console, result: TerminalResult) -> None:
    if action == SKIP:
        desk.skip(item.session_id)
        result.skipped += 1
        console.print(f"Skipped {item.session_id}.")
        return
    record = desk.label(item.session_id, action)
    result.labelled[action] = result.labelled.get(action, 0) + 1
    console.print(f"Labelled {item.session_id} as {record.label}, written to {desk.reviews_path}.")
