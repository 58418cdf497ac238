"""Collect stage: read access logs and click-event files into one raw events table.

Every input line becomes either a row of `raw_events` (parquet with exactly
RAW_EVENT_SCHEMA) or a JSON line in `quarantine` with a reason. Client addresses are
replaced by pseudonyms as soon as a line is parsed, and quarantine excerpts go through
`redact_ips`, so no raw client IP is written. The report counts lines per file and reason.

Usage, as dvc.yaml calls it:
    python -m src.data.collect LOG_DIR RAW_EVENTS QUARANTINE REPORT [--params params.yaml]
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq
import typer
from omegaconf import DictConfig
from pydantic import ValidationError

from src.config import PARAMS_FILE, load_params
from src.data.click_event import MAX_PATH_CHARS_CONTEXT, ClickEvent, StoredClickEvent
from src.data.log_parser import LineError, parse_line
from src.data.pseudonymize import (
    REDACTED_PREFIX,
    InvalidClientAddress,
    Pseudonymizer,
    parse_client_address,
    redact_ips,
)
from src.data.schema import RAW_EVENT_COLUMNS, RAW_EVENT_SCHEMA
from src.data.sources import JSONL, LogFile, SourceReadError, discover_log_files, iter_lines
from src.logs import configure_logging

logger = logging.getLogger(__name__)

DECODE_ERRORS = "backslashreplace"
STAGED_SUFFIX = ".partial"

LineParser = Callable[[str], dict[str, Any]]


class OutputWriteError(OSError):
    """An output file or its directory that cannot be written."""


@dataclass
class FileStats:
    """Line counts of one input file for the collect report."""

    log_file: LogFile
    lines: int = 0
    parsed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    read_error: str | None = None

    @property
    def quarantined(self) -> int:
        """Number of lines written to the quarantine file."""
        return sum(self.reasons.values())

    def to_report(self) -> dict[str, Any]:
        """Return the report entry of this file."""
        return {
            "path": self.log_file.source,
            "format": self.log_file.format,
            "compressed": self.log_file.compressed,
            "lines": self.lines,
            "parsed": self.parsed,
            "quarantined": self.quarantined,
            "quarantine_reasons": dict(sorted(self.reasons.items())),
            "read_error": self.read_error,
        }


class RawEventWriter:
    """Buffer raw events and write them to parquet in row groups of `batch_rows` rows."""

    def __init__(self, writer: pq.ParquetWriter, batch_rows: int) -> None:
        if batch_rows < 1:
            raise ValueError(f"invalid data.write_batch_rows={batch_rows}: it must be at least 1")
        self._writer = writer
        self._batch_rows = batch_rows
        self._columns: dict[str, list[Any]] = {name: [] for name in RAW_EVENT_COLUMNS}
        self._buffered = 0

    def add(self, event: dict[str, Any]) -> None:
        """Buffer one event that has every raw event column, and flush a full batch."""
        for name, values in self._columns.items():
            values.append(event[name])
        self._buffered += 1
        if self._buffered >= self._batch_rows:
            self.flush()

    def flush(self) -> None:
        """Write the buffered events as one row group."""
        if not self._buffered:
            return
        table = pa.Table.from_pydict(self._columns, schema=RAW_EVENT_SCHEMA)
        self._writer.write_table(table, row_group_size=self._batch_rows)
        for values in self._columns.values():
            values.clear()
        self._buffered = 0


class QuarantineWriter:
    """Append rejected lines to the quarantine file as JSON lines with redacted excerpts."""

    def __init__(self, handle: TextIO, pseudonymizer: Pseudonymizer, excerpt_chars: int) -> None:
        self._handle = handle
        self._pseudonymizer = pseudonymizer
        self._excerpt_chars = excerpt_chars

    def add(self, source: str, line_no: int, reason: str, text: str) -> None:
        """Write one entry: file, line_no, reason and the excerpt of `text`."""
        entry = {"file": source, "line_no": line_no, "reason": reason, "excerpt": self.excerpt(text)}
        self._handle.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def excerpt(self, text: str) -> str:
        """Return `text` with its IP literals and client host name pseudonymized, then truncated.

        A first word that is a host name with a dot is replaced, because a name logged with
        HostnameLookups often encodes the IP. Redaction runs before truncation, so the cut
        cannot leave part of an address unredacted. A partial address that is already in
        the line, such as "192.0.2" at a cut-off end, is not recognized and stays.
        """
        first, separator, rest = text.partition(" ")
        if _is_dotted_hostname(first):
            first = REDACTED_PREFIX + self._pseudonymizer.client_id(first)
        return redact_ips(first + separator + rest, self._pseudonymizer)[: self._excerpt_chars]


def _is_dotted_hostname(word: str) -> bool:
    try:
        address = parse_client_address(word)
    except InvalidClientAddress:
        return False
    return isinstance(address, str) and "." in address


def collect(log_dir: Path, raw_events: Path, quarantine: Path, report: Path, cfg: DictConfig) -> dict[str, Any]:
    """Parse every log file under `log_dir` into `raw_events`, `quarantine` and `report`.

    `cfg` is the composed config, and its `data` node sets the globs, pseudonym key and
    batch size. Outputs are written to `<name>.partial` and renamed when all files are
    read, so a failed run leaves no half-written output. Returns the report.
    Raises FileNotFoundError when no log file is found and OutputWriteError when an
    output cannot be written.
    """
    data_cfg = cfg.data
    log_files = discover_log_files(Path(log_dir), list(data_cfg.log_globs), list(data_cfg.jsonl_globs))
    mixed = simulated_files(Path(log_dir), cfg)
    return collect_files(log_files + mixed, raw_events, quarantine, report, cfg, mixed_in=mixed)


def simulated_files(log_dir: Path, cfg: DictConfig) -> list[LogFile]:
    """Return the simulator's log files to mix in, when `data.mix_simulated` is on.

    Mixing adds labelled liar families (scrapers, click fraud, headless browsers) to real
    logs that have none. Nothing is added when the simulator folder is the input itself.
    """
    sim_dir = Path(str(cfg.paths.sim_dir))
    if not bool(cfg.data.mix_simulated) or sim_dir.resolve() == log_dir.resolve():
        return []
    if not sim_dir.is_dir():
        logger.warning("data.mix_simulated is on but %s does not exist; run `botclick simulate %s` to mix in simulated traffic", sim_dir, sim_dir)
        return []
    files = discover_log_files(sim_dir, list(cfg.data.log_globs), list(cfg.data.jsonl_globs))
    logger.info("mixing in %d simulated log files from %s", len(files), sim_dir)
    return files


def collect_files(
    log_files: list[LogFile],
    raw_events: Path,
    quarantine: Path,
    report: Path,
    cfg: DictConfig,
    mixed_in: Sequence[LogFile] = (),
) -> dict[str, Any]:
    """Parse the given files into `raw_events`, `quarantine` and `report`, as `collect` does.

    Files in `mixed_in` (simulated traffic) are parsed like the others, but the report
    counts them under "simulated", so "files" and "totals" describe the input logs alone.
    """
    data_cfg = cfg.data
    pseudonymizer = Pseudonymizer.from_config(data_cfg)
    started = time.perf_counter()

    with ExitStack() as stack:
        events_path, quarantine_path, report_path = (
            stack.enter_context(_staged_output(Path(path))) for path in (raw_events, quarantine, report)
        )
        stats = _collect_files(log_files, events_path, quarantine_path, pseudonymizer, data_cfg)
        mixed_paths = {log_file.path for log_file in mixed_in}
        summary = build_report([st for st, f in zip(stats, log_files, strict=True) if f.path not in mixed_paths])
        if mixed_paths:
            summary["simulated"] = build_report([st for st, f in zip(stats, log_files, strict=True) if f.path in mixed_paths])
        report_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    _log_totals(summary["totals"], time.perf_counter() - started)
    return summary


def build_report(stats: list[FileStats]) -> dict[str, Any]:
    """Return the collect report: one entry per file and the totals over all files."""
    files = [file_stats.to_report() for file_stats in stats]
    totals = {name: sum(entry[name] for entry in files) for name in ("lines", "parsed", "quarantined")}
    totals["read_errors"] = sum(entry["read_error"] is not None for entry in files)
    return {"files": files, "totals": totals}


def _collect_files(
    log_files: list[LogFile],
    events_path: Path,
    quarantine_path: Path,
    pseudonymizer: Pseudonymizer,
    data_cfg: DictConfig,
) -> list[FileStats]:
    """Parse all files into one parquet writer and one quarantine file."""
    parsers = {JSONL: _jsonl_parser(int(data_cfg.click_event_max_path_chars))}
    gzip_read_bytes = int(data_cfg.gzip_read_bytes)
    stats = []

    with (
        pq.ParquetWriter(events_path, RAW_EVENT_SCHEMA) as parquet,
        quarantine_path.open("w", encoding="utf-8") as quarantine_handle,
    ):
        events = RawEventWriter(parquet, int(data_cfg.write_batch_rows))
        rejected = QuarantineWriter(quarantine_handle, pseudonymizer, int(data_cfg.quarantine_excerpt_chars))
        for log_file in log_files:
            parse = parsers.get(log_file.format, parse_line)
            stats.append(_collect_file(log_file, parse, pseudonymizer, events, rejected, gzip_read_bytes))
        events.flush()
    return stats


def _collect_file(
    log_file: LogFile,
    parse: LineParser,
    pseudonymizer: Pseudonymizer,
    events: RawEventWriter,
    rejected: QuarantineWriter,
    gzip_read_bytes: int,
) -> FileStats:
    """Parse one file line by line. A bad line or a damaged gzip stream never aborts it."""
    stats = FileStats(log_file)
    try:
        for raw_line in iter_lines(log_file, gzip_read_bytes):
            stats.lines += 1
            text = raw_line.decode("utf-8", DECODE_ERRORS)
            try:
                event = _to_raw_event(parse(text), pseudonymizer)
            except LineError as err:
                rejected.add(log_file.source, stats.lines, err.reason, text)
                stats.reasons[err.reason] += 1
                continue
            event["source"] = log_file.source
            event["line_no"] = stats.lines
            events.add(event)
            stats.parsed += 1
    except SourceReadError as err:
        _record_read_error(stats, err, rejected)

    _log_file_summary(stats)
    return stats


def _to_raw_event(fields: dict[str, Any], pseudonymizer: Pseudonymizer) -> dict[str, Any]:
    """Replace the raw client address in parsed fields with its two pseudonyms.

    Fields of a stored click already carry pseudonyms and no address, and pass unchanged.
    """
    if "client_ip" not in fields:
        return fields
    client_ip = fields.pop("client_ip")
    try:
        fields["client_id"], fields["prefix_id"] = pseudonymizer.pseudonyms(client_ip)
    except InvalidClientAddress:
        raise LineError("invalid_client_address") from None
    return fields


def _record_read_error(stats: FileStats, err: SourceReadError, rejected: QuarantineWriter) -> None:
    """Count a damaged stream as one quarantined line that contains the cut-off last line, if any.

    So `parsed + quarantined == lines` still holds, and the quarantine file has one
    entry per quarantined line.
    """
    stats.lines += 1
    stats.read_error = err.reason
    stats.reasons[err.reason] += 1
    partial = err.partial_line.decode("utf-8", DECODE_ERRORS)
    rejected.add(stats.log_file.source, stats.lines, err.reason, partial)
    logger.error("%s: %s. Kept the %d lines read before it.", stats.log_file.source, err, stats.lines - 1)


def _jsonl_parser(max_path_chars: int) -> LineParser:
    """Return a parser of one JSON-lines click event that raises LineError."""
    context = {MAX_PATH_CHARS_CONTEXT: max_path_chars}

    def parse(text: str) -> dict[str, Any]:
        if not text.strip():
            raise LineError("empty_line")
        model = StoredClickEvent if _is_stored_click(text) else ClickEvent
        try:
            event = model.model_validate_json(text, context=context)
        except ValidationError as err:
            raise LineError(_click_event_reason(err)) from None
        return event.to_raw_fields()

    return parse


def _is_stored_click(text: str) -> bool:
    """Tell whether a JSON line is a click-store export: pseudonyms instead of a client IP."""
    try:
        row = json.loads(text)
    except ValueError:
        return False
    return isinstance(row, dict) and "client_id" in row and "client_ip" not in row


def _click_event_reason(err: ValidationError) -> str:
    """Name the first validation error, e.g. "invalid_json", "missing_ts" or "invalid_path"."""
    first = err.errors(include_url=False, include_input=False)[0]
    error_type = first["type"]
    field_name = str(first["loc"][0]) if first["loc"] else ""
    if error_type == "json_invalid":
        return "invalid_json"
    if error_type in ("model_type", "model_attributes_type") or not field_name:
        return "not_a_json_object"
    if error_type == "missing":
        return f"missing_{field_name}"
    if error_type == "extra_forbidden":
        return "unknown_field"
    return f"invalid_{field_name}"


@contextmanager
def _staged_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path` and rename it to `path` on success.

    Raises OutputWriteError when the directory or file cannot be created.
    """
    staged = path.with_name(path.name + STAGED_SUFFIX)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staged.touch()
    except OSError as err:
        raise OutputWriteError(
            f"cannot write the output {path}: {err.strerror or err}. Check that its directory "
            "is a writable directory, or pass another output path."
        ) from err

    try:
        yield staged
    except BaseException:
        staged.unlink(missing_ok=True)
        raise

    try:
        os.replace(staged, path)
    except OSError as err:
        staged.unlink(missing_ok=True)
        raise OutputWriteError(
            f"cannot replace the output {path}: {err.strerror or err}. If it is a directory, remove it "
            "or pass a file path."
        ) from err


def _log_file_summary(stats: FileStats) -> None:
    reasons = ", ".join(f"{reason}={count}" for reason, count in sorted(stats.reasons.items()))
    logger.info(
        "%s (%s%s): %d lines, %d parsed, %d quarantined%s",
        stats.log_file.source,
        stats.log_file.format,
        ", gzip" if stats.log_file.compressed else "",
        stats.lines,
        stats.parsed,
        stats.quarantined,
        f" ({reasons})" if reasons else "",
    )


def _log_totals(totals: dict[str, int], seconds: float) -> None:
    rate = totals["lines"] / seconds if seconds > 0 else float("inf")
    logger.info(
        "collected %d lines: %d parsed, %d quarantined, %d read errors, in %.2f s (%.0f lines/s)",
        totals["lines"],
        totals["parsed"],
        totals["quarantined"],
        totals["read_errors"],
        seconds,
        rate,
    )


app = typer.Typer(add_completion=False, help="Collect access logs and click events into the raw events parquet.")


@app.command()
def main(
    log_dir: Path = typer.Argument(..., help="Directory with access logs and *.jsonl click events (paths.log_dir)."),
    raw_events: Path = typer.Argument(..., help="Parquet file to write the raw events to (paths.raw_events)."),
    quarantine: Path = typer.Argument(..., help="JSON-lines file to write rejected lines to (paths.quarantine)."),
    report: Path = typer.Argument(..., help="JSON file to write the line counts to (paths.collect_report)."),
    params: Path = typer.Option(Path(PARAMS_FILE), "--params", help="Params file composed from conf/."),
) -> None:
    """Collect the logs in LOG_DIR into RAW_EVENTS, QUARANTINE and REPORT."""
    configure_logging()
    try:
        collect(log_dir, raw_events, quarantine, report, load_params(params))
    except OSError as err:
        logger.error("collect failed: %s", err)
        raise typer.Exit(code=1) from err


if __name__ == "__main__":
    app()
