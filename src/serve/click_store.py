"""The click store: one SQL row per scored click, and its export as a pipeline source.

The table has the raw event columns of `RAW_EVENT_SCHEMA` (without the provenance
columns `source`, `line_no` and `source_format`) plus the service's outcome: session id,
bot probability, decision, model version and the time the service received the click.
Client addresses are stored only as the collect stage's pseudonyms, never as raw IPs.

Any SQLAlchemy URL works. SQLite gets the PRAGMAs of `serve.store.sqlite_pragmas`
(WAL by default), so an export can read while the service writes.

`export_click_store` writes the rows as JSON lines, and `parse_exported_line` turns one
line back into raw event fields with the pseudonyms already set, for the collect stage.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import make_url

from src.data.click_event import MAX_STATUS, MIN_STATUS
from src.data.log_parser import HTTP_TOKEN_PATTERN, INT64_MAX, LineError
from src.data.schema import RAW_EVENT_COLUMNS, RAW_EVENT_SCHEMA

logger = logging.getLogger(__name__)

# Raw event columns that record where a log line came from. The export sets them.
PROVENANCE_COLUMNS: tuple[str, ...] = ("source", "line_no", "source_format")
STORED_RAW_COLUMNS: tuple[str, ...] = tuple(c for c in RAW_EVENT_COLUMNS if c not in PROVENANCE_COLUMNS)
OUTCOME_COLUMNS: tuple[str, ...] = ("session_id", "bot_probability", "decision", "model_version", "received_at")
RECORD_COLUMNS: tuple[str, ...] = STORED_RAW_COLUMNS + OUTCOME_COLUMNS
ID_COLUMN = "id"
# `source_format` of events read from the click store.
CLICK_STORE_FORMAT = "click_store"
# Rows fetched per round trip when reading the store.
READ_BATCH_ROWS = 10_000
DECISION_CHARS = 8

_SQL_TYPES = {
    pa.string(): Text,
    pa.int16(): SmallInteger,
    pa.int64(): BigInteger,
    pa.timestamp("us", tz="UTC"): lambda: DateTime(timezone=True),
}
_PRAGMA_VALUE_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def click_table(metadata: MetaData, name: str) -> Table:
    """Define the click store table: the stored raw event columns and the outcome columns."""
    columns: list[Column[Any]] = [
        # SQLite assigns ids only to an INTEGER PRIMARY KEY, so use Integer there.
        Column(ID_COLUMN, BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    ]
    for field in RAW_EVENT_SCHEMA:
        if field.name in PROVENANCE_COLUMNS:
            continue
        if field.type not in _SQL_TYPES:
            raise TypeError(f"no SQL type for raw event column {field.name} of type {field.type}; add it to _SQL_TYPES")
        columns.append(Column(field.name, _SQL_TYPES[field.type](), nullable=field.nullable))
    columns += [
        Column("session_id", Text, nullable=False),
        Column("bot_probability", Double, nullable=False),
        Column("decision", String(DECISION_CHARS), nullable=False),
        Column("model_version", Text, nullable=False),
        Column("received_at", DateTime(timezone=True), nullable=False),
    ]
    return Table(name, metadata, *columns, Index(f"ix_{name}_ts", "ts"))


def create_store_engine(url: str, sqlite_pragmas: Mapping[str, str]) -> Engine:
    """Create the engine of a store URL; a SQLite file gets its folder and the PRAGMAs."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    statements = [_pragma_statement(key, value) for key, value in sqlite_pragmas.items()]
    engine = create_engine(parsed)

    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for statement in statements:
            cursor.execute(statement)
        cursor.close()

    return engine


def _pragma_statement(key: str, value: str) -> str:
    if not key.isidentifier() or not value or not set(value) <= _PRAGMA_VALUE_CHARS:
        raise ValueError(
            f"invalid SQLite PRAGMA {key}={value!r} in serve.store.sqlite_pragmas: use a name and a plain "
            "word or number, such as journal_mode: WAL"
        )
    return f"PRAGMA {key}={value}"


def redact_url(url: str) -> str:
    """Return the URL with any password masked, for logs and status pages."""
    return make_url(url).render_as_string(hide_password=True)


class ClickStore:
    """The click table in one database: create it, insert rows, read them back."""

    def __init__(self, url: str, table_name: str, sqlite_pragmas: Mapping[str, str]) -> None:
        self.url = url
        self.engine = create_store_engine(url, sqlite_pragmas)
        self.metadata = MetaData()
        self.table = click_table(self.metadata, table_name)
        self._created = False

    def create_table(self) -> None:
        """Create the table and its index if they do not exist."""
        self.metadata.create_all(self.engine)
        self._created = True

    def insert(self, records: list[dict[str, Any]]) -> None:
        """Insert records (dicts with RECORD_COLUMNS) in one transaction.

        Times are converted to UTC first, because SQLite stores them without an offset.
        """
        if not records:
            return
        if not self._created:
            self.create_table()
        rows = [{**r, "ts": as_utc(r["ts"]), "received_at": as_utc(r["received_at"])} for r in records]
        with self.engine.begin() as connection:
            connection.execute(insert(self.table), rows)

    def check_writable(self) -> None:
        """Insert a probe row and roll it back; raises the driver's error when writes fail."""
        if not self._created:
            self.create_table()
        probe = {name: None for name in RECORD_COLUMNS} | _PROBE_VALUES
        with self.engine.connect() as connection:
            transaction = connection.begin()
            try:
                connection.execute(insert(self.table), [probe])
            finally:
                transaction.rollback()

    def count(self) -> int:
        """Return the number of stored clicks."""
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(self.table)).scalar_one())

    def iter_rows(self, since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Yield stored rows in id order, with `ts` and `received_at` as UTC datetimes.

        Reads READ_BATCH_ROWS rows per query by id range, so each query is short and holds no
        lock for long while the service inserts.
        """
        last_id = 0
        while True:
            query = select(self.table).where(self.table.c[ID_COLUMN] > last_id)
            if since is not None:
                query = query.where(self.table.c.ts >= since)
            query = query.order_by(self.table.c[ID_COLUMN]).limit(READ_BATCH_ROWS)
            with self.engine.connect() as connection:
                rows = [dict(row._mapping) for row in connection.execute(query)]
            if not rows:
                return
            for row in rows:
                row["ts"] = as_utc(row["ts"])
                row["received_at"] = as_utc(row["received_at"])
                yield row
            last_id = rows[-1][ID_COLUMN]

    def dispose(self) -> None:
        """Close the engine's pooled connections."""
        self.engine.dispose()


_PROBE_VALUES: dict[str, Any] = {
    "ts": datetime(1970, 1, 1, tzinfo=UTC),
    "client_id": "", "prefix_id": "", "method": "", "path": "", "protocol": "", "referrer": "", "user_agent": "",
    "session_id": "", "bot_probability": 0.0, "decision": "", "model_version": "",
    "received_at": datetime(1970, 1, 1, tzinfo=UTC),
}  # fmt: skip


def as_utc(value: datetime) -> datetime:
    """Return a stored time as an aware UTC datetime; SQLite returns UTC times without an offset."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_raw_events(url: str, table_name: str, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Yield the stored clicks as raw event dicts with exactly RAW_EVENT_COLUMNS.

    `source` is "click_store/<table>", `line_no` the row id and `source_format` "click_store".
    """
    store = ClickStore(url, table_name, {})
    try:
        for row in store.iter_rows(since):
            yield raw_event_from_row(row, table_name)
    finally:
        store.dispose()


def raw_event_from_row(row: Mapping[str, Any], table_name: str) -> dict[str, Any]:
    """Return one store row as a raw event dict (RAW_EVENT_COLUMNS)."""
    event = {name: row[name] for name in STORED_RAW_COLUMNS}
    event["source"] = f"{CLICK_STORE_FORMAT}/{table_name}"
    event["line_no"] = int(row[ID_COLUMN])
    event["source_format"] = CLICK_STORE_FORMAT
    return {name: event[name] for name in RAW_EVENT_COLUMNS}


def exported_line(row: Mapping[str, Any]) -> str:
    """Return one store row as a JSON line (times in ISO-8601 UTC, `store_id` the row id).

    An empty protocol is written as null, as in a click event, whose protocol must
    otherwise look like "HTTP/1.1".
    """
    record: dict[str, Any] = {name: row[name] for name in RECORD_COLUMNS}
    record["protocol"] = row["protocol"] or None
    record["ts"] = _iso(row["ts"])
    record["received_at"] = _iso(row["received_at"])
    record["store_id"] = int(row[ID_COLUMN])
    return json.dumps(record, ensure_ascii=False)


def _iso(value: datetime) -> str:
    return as_utc(value).isoformat().replace("+00:00", "Z")


def export_click_store(url: str, table_name: str, out: Path, since: datetime | None = None) -> int:
    """Write the stored clicks (from `since` on, by click time) to `out` as JSON lines.

    The file is written as `<out>.partial` and renamed at the end, so a failed export
    leaves no half-written file. Returns the number of lines written.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(out.name + ".partial")
    store = ClickStore(url, table_name, {})
    written = 0
    try:
        with staged.open("w", encoding="utf-8") as handle:
            for row in store.iter_rows(since):
                handle.write(exported_line(row) + "\n")
                written += 1
        os.replace(staged, out)
    finally:
        staged.unlink(missing_ok=True)
        store.dispose()
    logger.info("exported %d clicks from %s (table %s) to %s", written, redact_url(url), table_name, out)
    return written


class ExportedClick(BaseModel):
    """One line of `export_click_store` output, checked before it re-enters the pipeline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ts: datetime
    client_id: str = Field(min_length=1, pattern=r"^[0-9a-f]+$")
    prefix_id: str = Field(min_length=1, pattern=r"^[0-9a-f]+$")
    method: str = Field(pattern=f"^(?:{HTTP_TOKEN_PATTERN})?$")
    path: str
    protocol: str | None
    status: int | None = Field(default=None, ge=MIN_STATUS, le=MAX_STATUS, strict=True)
    bytes: int | None = Field(default=None, ge=0, le=INT64_MAX, strict=True)
    referrer: str
    user_agent: str
    session_id: str
    bot_probability: float = Field(ge=0.0, le=1.0)
    decision: str
    model_version: str
    received_at: datetime
    store_id: int = Field(ge=1)


def parse_exported_line(text: str) -> dict[str, Any]:
    """Parse one exported JSON line into raw event fields, pseudonyms included.

    Returns ts (UTC), client_id, prefix_id, method, path, protocol, status, bytes, referrer,
    user_agent and source_format "click_store": the fields that collect's parsers return,
    with the pseudonyms in place of `client_ip`. Raises LineError with a short reason.
    """
    if not text.strip():
        raise LineError("empty_line")
    try:
        click = ExportedClick.model_validate_json(text)
    except ValidationError as err:
        raise LineError(_exported_line_reason(err)) from None
    if click.ts.utcoffset() is None:
        raise LineError("invalid_ts")

    fields = {name: getattr(click, name) for name in STORED_RAW_COLUMNS}
    fields["ts"] = click.ts.astimezone(UTC)
    fields["protocol"] = click.protocol or ""
    fields["source_format"] = CLICK_STORE_FORMAT
    return fields


def _exported_line_reason(err: ValidationError) -> str:
    first = err.errors(include_url=False, include_input=False)[0]
    if first["type"] == "json_invalid":
        return "invalid_json"
    field_name = str(first["loc"][0]) if first["loc"] else ""
    if not field_name:
        return "not_a_json_object"
    if first["type"] == "missing":
        return f"missing_{field_name}"
    if first["type"] == "extra_forbidden":
        return "unknown_field"
    return f"invalid_{field_name}"
