"""Pick log lines to replay through the scoring service, and write them for batch scoring.

A line is replayed only when both the collect stage and the service's request schema
(`ClickEvent`) accept it, so the service and `score_logs` see exactly the same requests.
The replay file contains raw client addresses, so callers keep it in a temporary folder
that is removed after the smoke test.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from pydantic import ValidationError

from src.data.click_event import MAX_PATH_CHARS_CONTEXT, ClickEvent
from src.data.log_parser import LineError, parse_line
from src.data.sources import JSONL, LogFile, SourceReadError, discover_log_files, iter_lines

logger = logging.getLogger(__name__)

REPLAY_FILE = "replay.log"


@dataclass
class Replay:
    """Events to send, in time order, and the file with the same lines for batch scoring."""

    events: list[dict[str, Any]]
    path: Path
    lines_read: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def event_from_line(text: str, max_path_chars: int, latest_ts: float) -> dict[str, Any]:
    """Parse one access-log line into a service request body; raises LineError with a short reason."""
    fields = parse_line(text)
    body = {
        "ts": fields["ts"].isoformat(), "client_ip": fields["client_ip"], "user_agent": fields["user_agent"],
        "method": fields["method"], "path": fields["path"], "referrer": fields["referrer"] or None,
        "protocol": fields["protocol"] or None, "status": fields["status"], "bytes": fields["bytes"],
    }  # fmt: skip
    try:
        event = ClickEvent.model_validate(body, context={MAX_PATH_CHARS_CONTEXT: max_path_chars})
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        raise LineError(f"service_rejects_{first['loc'][0] if first['loc'] else 'event'}") from None
    if event.ts.timestamp() > latest_ts:
        raise LineError("future_ts")
    return body


def access_log_files(cfg: DictConfig) -> list[LogFile]:
    """Return the access-log files of paths.log_dir; JSON-lines click files are not replayed."""
    files = discover_log_files(Path(str(cfg.paths.log_dir)), list(cfg.data.log_globs), list(cfg.data.jsonl_globs))
    access = [f for f in files if f.format != JSONL]
    if not access:
        raise FileNotFoundError(f"no access-log files in {cfg.paths.log_dir} to replay; the smoke test needs at least one")
    return access


def build_replay(cfg: DictConfig, max_lines: int, folder: Path) -> Replay:
    """Take the first `max_lines` replayable lines of the access logs, sort them by time and write them to `folder`.

    Sorting by time, with ties in file order, matches the preprocess stage. Lines ahead
    of the clock by more than serve.max_future_skew_s are left out, as the service rejects them.
    """
    skew = cfg.serve.get("max_future_skew_s")
    latest_ts = time.time() + (float(skew) if skew is not None else float("inf"))
    max_path_chars = int(cfg.data.click_event_max_path_chars)
    chosen: list[tuple[float, int, str, dict[str, Any]]] = []
    skipped: Counter[str] = Counter()
    read = 0
    for log_file in access_log_files(cfg):
        try:
            for raw in iter_lines(log_file, int(cfg.data.gzip_read_bytes)):
                if len(chosen) >= max_lines:
                    break
                read += 1
                text = raw.decode("utf-8", "backslashreplace").rstrip("\r\n")
                try:
                    body = event_from_line(text, max_path_chars, latest_ts)
                except LineError as err:
                    skipped[err.reason] += 1
                    continue
                chosen.append((ClickEvent.model_validate(body).ts.timestamp(), len(chosen), text, body))
        except SourceReadError as err:
            skipped[err.reason] += 1
            logger.warning("replay stopped reading %s: %s", log_file.path, err)
        if len(chosen) >= max_lines:
            break

    chosen.sort(key=lambda item: (item[0], item[1]))
    path = folder / REPLAY_FILE
    path.write_text("".join(line + "\n" for _, _, line, _ in chosen), encoding="utf-8")
    logger.info("replay: %d lines chosen of %d read; skipped %s", len(chosen), read, dict(skipped))
    return Replay([body for *_, body in chosen], path, read, dict(skipped))


def batches(events: list[dict[str, Any]], size: int) -> list[str]:
    """Return the /v1/score/batch request bodies, `size` events each, as JSON text."""
    return [json.dumps({"events": events[start:start + size]}) for start in range(0, len(events), size)]
