"""Preprocess stage: turn raw events into time-ordered, de-duplicated, sessionized events.

Reads the raw events parquet written by `collect` and sorts it by time. Drops exact
duplicates, such as the overlap of two rotated log files. Gives every request a kind and
a session, then writes the events parquet with EVENT_COLUMNS and a JSON report.

    python -m src.data.preprocess RAW_EVENTS EVENTS REPORT [--params params.yaml]
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import typer
from omegaconf import DictConfig

from src.config import PARAMS_FILE, load_params
from src.data.schema import EVENT_COLUMNS, RAW_EVENT_COLUMNS, RAW_EVENT_SCHEMA, SESSION_COLUMNS
from src.features.request_kind import REQUEST_KINDS, RequestKindClassifier
from src.features.sessions import assign_sessions
from src.logs import configure_logging

logger = logging.getLogger(__name__)

# Columns that record where a line came from. Duplicate detection ignores them, so the
# same line read from two overlapping rotated files matches itself.
PROVENANCE_COLUMNS: list[str] = ["source", "line_no", "source_format"]
DEDUP_COLUMNS: list[str] = [c for c in RAW_EVENT_COLUMNS if c not in PROVENANCE_COLUMNS]
SORT_COLUMNS: list[str] = ["ts", "source", "line_no"]

EVENT_SCHEMA: pa.Schema = pa.schema(
    list(RAW_EVENT_SCHEMA) + [pa.field(name, pa.string(), nullable=False) for name in SESSION_COLUMNS]
)
# Nullable integer columns keep their type in pandas instead of turning into floats.
_PANDAS_INT_TYPES = {pa.int16(): pd.Int16Dtype(), pa.int64(): pd.Int64Dtype()}


def read_parquet_frame(path: Path, columns: list[str], stage: str) -> pd.DataFrame:
    """Read a parquet file into a DataFrame with nullable integer columns.

    Raises FileNotFoundError naming the stage that writes the file when it is missing,
    and ValueError when one of `columns` is missing from the file.
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"input file not found: {path}. The `{stage}` stage writes it: run `dvc repro {stage}` "
            f"(or `python -m src.data.{stage}`) first."
        )

    table = pq.read_table(path)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(
            f"invalid input file {path}: missing columns {missing}. Re-run the `{stage}` stage "
            "so the file matches src/data/schema.py."
        )
    return table.select(columns).to_pandas(types_mapper=_PANDAS_INT_TYPES.get)


def sort_events(raw: pd.DataFrame) -> pd.DataFrame:
    """Sort events by timestamp, breaking ties by file order (source, then line number)."""
    return raw.sort_values(SORT_COLUMNS, kind="stable").reset_index(drop=True)


def drop_duplicate_events(events: pd.DataFrame, drop_repeats_within_source: bool) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop events that repeat an identical event, keeping the first, and count them.

    Events are identical when they match in every column except the provenance columns.
    A file that overlaps another repeats its lines, so the n-th identical line of a file
    is dropped when an earlier file already has an n-th copy. Identical lines within one
    file are usually separate requests in the same second, so they are dropped only when
    `drop_repeats_within_source` is true. `events` must be sorted, so the kept copy is
    the earliest in file order. Returns the remaining events and the counts.
    """
    occurrence = events.groupby(DEDUP_COLUMNS + ["source"], sort=False, dropna=False).cumcount()
    is_repeat = occurrence > 0
    is_copy = events.assign(_occurrence=occurrence).duplicated(DEDUP_COLUMNS + ["_occurrence"], keep="first")
    is_duplicate = is_copy | is_repeat if drop_repeats_within_source else is_copy

    counts = {
        "duplicates_dropped": int(is_duplicate.sum()),
        "copies_across_sources": int(is_copy.sum()),
        "repeats_within_source": int(is_repeat.sum()),
    }
    unique_events = events.loc[~is_duplicate].reset_index(drop=True)
    return unique_events, counts


def classify_requests(paths: pd.Series, classifier: RequestKindClassifier) -> pd.Series:
    """Return the request kind of each path, classifying every distinct path once."""
    kinds = {path: classifier.classify(path) for path in paths.unique()}
    return paths.map(kinds)


def write_events(events: pd.DataFrame, path: Path) -> None:
    """Write events with EVENT_COLUMNS in the EVENT_SCHEMA types."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(events[EVENT_COLUMNS], schema=EVENT_SCHEMA, preserve_index=False)
    pq.write_table(table, path)


def write_report(report: dict[str, Any], path: Path) -> None:
    """Write a stage report as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def summarize_events(events: pd.DataFrame) -> dict[str, Any]:
    """Count sessions, clients and requests per kind in sessionized events.

    A session that spans two source files counts once for each file, so the values of
    `sessions_per_source` can add up to more than `sessions`.
    """
    kind_counts = events["kind"].value_counts()
    sessions_per_source = events.groupby("source")["session_id"].nunique()
    return {
        "sessions": int(events["session_id"].nunique()),
        "clients": int(events["client_key"].nunique()),
        "ip_pseudonyms": int(events["client_id"].nunique()),
        "rows_per_kind": {kind: int(kind_counts.get(kind, 0)) for kind in REQUEST_KINDS},
        "sessions_per_source": {str(s): int(n) for s, n in sessions_per_source.sort_index().items()},
    }


def sessionize(raw: pd.DataFrame, cfg: DictConfig) -> tuple[pd.DataFrame, dict[str, int]]:
    """Sort, de-duplicate, classify and sessionize raw events.

    Returns the events with EVENT_COLUMNS and the duplicate counts.
    """
    preprocess_cfg = cfg.data.preprocess
    events, duplicate_counts = drop_duplicate_events(
        sort_events(raw), bool(preprocess_cfg.drop_repeats_within_source)
    )

    classifier = RequestKindClassifier.from_config(preprocess_cfg)
    events["kind"] = classify_requests(events["path"], classifier)

    if events.empty:
        for column in ("client_key", "session_id"):
            events[column] = pd.Series(dtype="str")
    else:
        events = assign_sessions(events, float(preprocess_cfg.inactivity_gap_s))
    return events[EVENT_COLUMNS], duplicate_counts


def preprocess(raw_events: Path, events: Path, report: Path, cfg: DictConfig) -> dict[str, Any]:
    """Run the preprocess stage from the raw events file to the events file and its report.

    An empty raw events file gives an empty events file and a WARNING. Returns the report.
    """
    raw = read_parquet_frame(Path(raw_events), RAW_EVENT_COLUMNS, stage="collect")
    if raw.empty:
        logger.warning("raw events file %s has no rows; writing an empty events file", raw_events)

    sessionized, duplicate_counts = sessionize(raw, cfg)
    write_events(sessionized, Path(events))

    summary = {
        "rows_in": len(raw),
        **duplicate_counts,
        "rows_out": len(sessionized),
        "inactivity_gap_s": float(cfg.data.preprocess.inactivity_gap_s),
        "drop_repeats_within_source": bool(cfg.data.preprocess.drop_repeats_within_source),
        **summarize_events(sessionized),
    }
    write_report(summary, Path(report))
    logger.info(
        "preprocess: %d rows in, %d duplicates dropped, %d rows out, %d sessions, wrote %s",
        summary["rows_in"], summary["duplicates_dropped"], summary["rows_out"], summary["sessions"], events,
    )
    return summary


app = typer.Typer(add_completion=False, help="Sort, de-duplicate and sessionize raw click events.")


@app.command()
def main(
    raw_events: Path = typer.Argument(..., help="Raw events parquet written by the collect stage."),
    events: Path = typer.Argument(..., help="Output: sessionized events parquet."),
    report: Path = typer.Argument(..., help="Output: JSON report of the stage."),
    params: Path = typer.Option(Path(PARAMS_FILE), "--params", help="Params file composed from conf/."),
) -> None:
    """Run the preprocess stage."""
    configure_logging()
    preprocess(raw_events, events, report, load_params(params))


if __name__ == "__main__":
    app()
