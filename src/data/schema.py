"""Column contracts shared by the pipeline stages and the scoring service.

Raw events (`data/raw/clicks.parquet`) have exactly RAW_EVENT_COLUMNS. Missing text
fields are empty strings ("-" in a log becomes ""), missing numbers are nulls, and
timestamps are UTC. No column holds a raw client IP: `client_id` and `prefix_id` are
keyed pseudonyms (see src/data/pseudonymize.py).
"""

from __future__ import annotations

import pyarrow as pa

RAW_EVENT_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("client_id", pa.string(), nullable=False),
        pa.field("prefix_id", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("protocol", pa.string(), nullable=False),
        pa.field("status", pa.int16()),
        pa.field("bytes", pa.int64()),
        pa.field("referrer", pa.string(), nullable=False),
        pa.field("user_agent", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("line_no", pa.int64(), nullable=False),
        pa.field("source_format", pa.string(), nullable=False),
    ]
)
RAW_EVENT_COLUMNS: list[str] = RAW_EVENT_SCHEMA.names

# Columns that preprocess adds: the client key (pseudonym + user agent), the session
# and the request kind (page, asset, feed, robots, affiliate, other).
SESSION_COLUMNS: list[str] = ["client_key", "session_id", "kind"]
EVENT_COLUMNS: list[str] = RAW_EVENT_COLUMNS + SESSION_COLUMNS

# Per-session labels written by the labels stage.
LABEL_COLUMNS: list[str] = [
    "session_id", "client_key", "client_id", "source", "session_start", "session_end",
    "n_requests", "label", "label_source", "declared_crawler", "family",
]
LABEL_SOURCES: tuple[str, ...] = ("review", "simulator", "honeypot", "declared_crawler", "none")

# data/labels/reviews.csv, written by human review and read by the labels stage.
REVIEW_COLUMNS: list[str] = ["session_id", "label", "reviewer", "reviewed_at", "model_version", "note"]
