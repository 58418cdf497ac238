"""Labels stage: give every session one weak label (1 = bot, 0 = human) and its source.

Label sources, highest precedence first:

1. `review`: a human review in data/labels/reviews.csv. The latest `reviewed_at` wins.
2. `simulator`: the simulator's ground truth for the client (pseudonymized IP + user agent).
3. `honeypot`: the session requested a path that matches `labels.honeypot_patterns`.
4. `declared_crawler`: crawlerdetect classifies the user agent as a crawler.
5. `none`: none of the above, so the session is presumed human.

    python -m src.data.labels EVENTS REVIEWS GROUND_TRUTH SESSION_LABELS REPORT [--params params.yaml]
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import typer
from crawlerdetect import CrawlerDetect
from omegaconf import DictConfig

from src.config import PARAMS_FILE, load_params
from src.data.preprocess import read_parquet_frame, write_report
from src.data.pseudonymize import InvalidClientAddress, Pseudonymizer
from src.data.schema import LABEL_COLUMNS, LABEL_SOURCES, REVIEW_COLUMNS
from src.features.sessions import client_key
from src.logs import configure_logging

logger = logging.getLogger(__name__)

BOT = 1
HUMAN = 0
REVIEW = "review"
SIMULATOR = "simulator"
HONEYPOT = "honeypot"
DECLARED_CRAWLER = "declared_crawler"
NO_SOURCE = "none"

GROUND_TRUTH_COLUMNS: list[str] = ["ip", "user_agent", "family", "is_bot", "automated"]
# Access logs write "-" for a missing user agent and collect stores it as "".
MISSING_LOG_FIELD = "-"
IS_BOT_VALUES: dict[str, int] = {"1": BOT, "0": HUMAN, "true": BOT, "false": HUMAN}

EVENT_INPUT_COLUMNS: list[str] = ["ts", "client_id", "user_agent", "path", "source", "client_key", "session_id"]
LABEL_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("client_key", pa.string(), nullable=False),
        pa.field("client_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("session_start", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("session_end", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("n_requests", pa.int64(), nullable=False),
        pa.field("label", pa.int64(), nullable=False),
        pa.field("label_source", pa.string(), nullable=False),
        pa.field("declared_crawler", pa.bool_(), nullable=False),
        pa.field("family", pa.string(), nullable=False),
    ]
)


def compile_honeypot_patterns(patterns: list[str]) -> re.Pattern[str] | None:
    """Join the honeypot regexes into one case-insensitive regex, or None when there are none."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regex {pattern!r} in labels.honeypot_patterns: {exc}") from exc
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


def summarize_sessions(events: pd.DataFrame, honeypot: re.Pattern[str] | None) -> pd.DataFrame:
    """Return one row per session with its client, first source file, time span and size.

    `events` must be sorted by time, as preprocess writes them. The `honeypot` column is
    True when any request path, query string included, matches the honeypot regex.
    """
    paths = events["path"].unique()
    trap_paths = {p for p in paths if honeypot is not None and honeypot.search(p)}
    flagged = events.assign(honeypot=events["path"].isin(trap_paths))

    sessions = flagged.groupby("session_id", sort=False).agg(
        client_key=("client_key", "first"),
        client_id=("client_id", "first"),
        user_agent=("user_agent", "first"),
        source=("source", "first"),
        session_start=("ts", "min"),
        session_end=("ts", "max"),
        n_requests=("ts", "size"),
        honeypot=("honeypot", "any"),
    )
    return sessions.reset_index().sort_values(["session_start", "session_id"], kind="stable")


def detect_declared_crawlers(user_agents: pd.Series) -> pd.Series:
    """Return crawlerdetect's verdict for each user agent, checking every distinct agent once."""
    detector = CrawlerDetect()
    verdicts = {ua: bool(detector.isCrawler(ua)) for ua in user_agents.unique()}
    return user_agents.map(verdicts).astype(bool)


def read_csv_text(path: Path, columns: list[str], description: str) -> pd.DataFrame:
    """Read a CSV file with every cell as text (empty cells stay "") and check its columns."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"invalid {description} file {path}: missing columns {missing}. Expected the header {','.join(columns)}"
        )
    return frame


def load_reviews(path: Path, review_labels: Mapping[str, int]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Read review rows and keep the latest review of each session.

    Labels are matched to `review_labels` after stripping spaces and lower-casing. Rows are
    numbered from 1 after the header in errors. Reviews of one session with the same
    `reviewed_at` resolve to the row that comes last in the file.
    Returns a frame of `session_id` and `label`, and the counts of rows read and superseded.
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"reviews file not found: {path}. Create it with the header line "
            f"`{','.join(REVIEW_COLUMNS)}` when there are no reviews yet."
        )

    reviews = read_csv_text(path, REVIEW_COLUMNS, "reviews")
    reviews["session_id"] = reviews["session_id"].str.strip()
    reviews["label"] = [
        _parse_review_label(value, row, path, review_labels)
        for row, value in enumerate(reviews["label"], start=1)
    ]
    reviews["reviewed_at"] = [
        _parse_review_time(value, row, path) for row, value in enumerate(reviews["reviewed_at"], start=1)
    ]
    for row, session in enumerate(reviews["session_id"], start=1):
        if not session:
            raise ValueError(f"invalid review in {path} at row {row}: empty session_id. Fill it in or remove the row")

    latest = reviews.sort_values("reviewed_at", kind="stable").drop_duplicates("session_id", keep="last")
    counts = {"review_rows": len(reviews), "reviews_superseded": len(reviews) - len(latest)}
    return latest[["session_id", "label"]].reset_index(drop=True), counts


def _parse_review_label(value: str, row: int, path: Path, review_labels: Mapping[str, int]) -> int:
    """Map one review label such as "bot" to its integer label, or raise naming the row."""
    key = value.strip().lower()
    if key not in review_labels:
        raise ValueError(
            f"invalid review label {value!r} in {path} at row {row}: "
            f"expected one of {sorted(review_labels)} (labels.review_labels)"
        )
    return int(review_labels[key])


def _parse_review_time(value: str, row: int, path: Path) -> pd.Timestamp:
    """Parse one `reviewed_at` value as a UTC timestamp (naive times are taken as UTC)."""
    try:
        parsed = pd.Timestamp(value.strip())
    except ValueError as exc:
        raise ValueError(
            f"invalid reviewed_at {value!r} in {path} at row {row}: expected an ISO 8601 time "
            "such as 2026-11-02T10:00:00+00:00"
        ) from exc
    if pd.isna(parsed):
        raise ValueError(f"missing reviewed_at in {path} at row {row}: expected an ISO 8601 time")
    return parsed.tz_localize("UTC") if parsed.tzinfo is None else parsed.tz_convert("UTC")


def load_ground_truth(path: Path, pseudonymizer: Pseudonymizer) -> pd.DataFrame | None:
    """Read the simulator's ground truth as `client_key`, `is_bot` and `family`, one row per client.

    Returns None when the file does not exist, which means there are no simulator labels.
    Raises ValueError when one client has rows with different `is_bot` or `family`.
    """
    if not path.is_file():
        logger.info("no simulator ground truth at %s, so no session gets a simulator label", path)
        return None

    truth = read_csv_text(path, GROUND_TRUTH_COLUMNS, "ground truth")
    truth["row"] = np.arange(1, len(truth) + 1)
    truth["is_bot"] = [_parse_is_bot(value, row, path) for row, value in zip(truth["row"], truth["is_bot"], strict=True)]

    pseudonyms = _pseudonymize_ground_truth(truth, path, pseudonymizer)
    user_agents = truth["user_agent"].replace(MISSING_LOG_FIELD, "")
    truth["client_key"] = [
        client_key(pseudonyms[ip], ua) for ip, ua in zip(truth["ip"], user_agents, strict=True)
    ]

    variants = truth.drop_duplicates(["client_key", "is_bot", "family"])
    conflicts = variants[variants.duplicated("client_key", keep=False)]
    if not conflicts.empty:
        raise ValueError(
            f"invalid ground truth in {path}: rows {conflicts['row'].tolist()} describe one client "
            "(same ip and user agent) with different is_bot or family. Keep one row per client"
        )
    return variants[["client_key", "is_bot", "family"]].reset_index(drop=True)


def _pseudonymize_ground_truth(truth: pd.DataFrame, path: Path, pseudonymizer: Pseudonymizer) -> dict[str, str]:
    """Return the client id of every distinct `ip` in the ground truth.

    Raises ValueError naming the first row with an invalid address, but not the address.
    """
    pseudonyms = {}
    for ip, row in zip(truth["ip"], truth["row"], strict=True):
        if ip in pseudonyms:
            continue
        try:
            pseudonyms[ip] = pseudonymizer.client_id(ip)
        except InvalidClientAddress as exc:
            raise ValueError(f"invalid ip in {path} at row {row}: {exc}") from None
    return pseudonyms


def _parse_is_bot(value: str, row: int, path: Path) -> int:
    """Map one ground-truth `is_bot` value (1/0/true/false) to an integer label."""
    key = value.strip().lower()
    if key not in IS_BOT_VALUES:
        raise ValueError(
            f"invalid is_bot {value!r} in {path} at row {row}: expected one of {sorted(IS_BOT_VALUES)}"
        )
    return IS_BOT_VALUES[key]


def resolve_labels(
    sessions: pd.DataFrame, reviews: pd.DataFrame, truth: pd.DataFrame | None
) -> pd.DataFrame:
    """Pick each session's label and label source by precedence and fill `family`.

    `sessions` needs the columns of `summarize_sessions` plus `declared_crawler`.
    `family` is the simulator family for clients in the ground truth, the source name
    when the honeypot or declared-crawler source won, and "" otherwise.
    """
    review_label = sessions["session_id"].map(reviews.set_index("session_id")["label"])
    if truth is None:
        truth = pd.DataFrame({"client_key": pd.Series(dtype=str), "is_bot": [], "family": []})
    by_client = truth.set_index("client_key")
    simulator_label = sessions["client_key"].map(by_client["is_bot"])
    simulator_family = sessions["client_key"].map(by_client["family"])

    conditions = [
        review_label.notna(),
        simulator_label.notna(),
        sessions["honeypot"].to_numpy(dtype=bool),
        sessions["declared_crawler"].to_numpy(dtype=bool),
    ]
    out = sessions.copy()
    out["label_source"] = np.select(conditions, [REVIEW, SIMULATOR, HONEYPOT, DECLARED_CRAWLER], NO_SOURCE)
    out["label"] = np.select(conditions, [review_label, simulator_label, BOT, BOT], HUMAN).astype("int64")

    source_family = out["label_source"].where(out["label_source"].isin([HONEYPOT, DECLARED_CRAWLER]), "")
    out["family"] = simulator_family.where(simulator_label.notna(), source_family).astype(str)
    return out


def summarize_labels(
    labels: pd.DataFrame, reviews: pd.DataFrame, truth: pd.DataFrame | None, review_counts: dict[str, int]
) -> dict[str, Any]:
    """Count sessions per label source, positives, negatives and how many reviews matched."""
    per_source = labels["label_source"].value_counts()
    matched_reviews = reviews["session_id"].isin(labels["session_id"])
    unmatched_clients = 0 if truth is None else int((~truth["client_key"].isin(labels["client_key"])).sum())
    return {
        "sessions": len(labels),
        "sessions_per_label_source": {s: int(per_source.get(s, 0)) for s in LABEL_SOURCES},
        "positives": int((labels["label"] == BOT).sum()),
        "negatives": int((labels["label"] == HUMAN).sum()),
        "declared_crawler_sessions": int(labels["declared_crawler"].sum()),
        "honeypot_sessions": int(labels["honeypot"].sum()),
        **review_counts,
        "reviews_applied": int((labels["label_source"] == REVIEW).sum()),
        # Review rows superseded by a later review of the same session are not counted here.
        "reviews_unmatched": int((~matched_reviews).sum()),
        "ground_truth_clients": 0 if truth is None else len(truth),
        "ground_truth_clients_unmatched": unmatched_clients,
    }


def write_labels(labels: pd.DataFrame, path: Path) -> None:
    """Write session labels with LABEL_COLUMNS in the LABEL_SCHEMA types."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(labels[LABEL_COLUMNS], schema=LABEL_SCHEMA, preserve_index=False)
    pq.write_table(table, path)


def build_labels(
    events: Path, reviews: Path, ground_truth: Path, session_labels: Path, report: Path, cfg: DictConfig
) -> dict[str, Any]:
    """Run the labels stage: write one label row per session and a JSON report; return the report.

    An events file without rows gives an empty labels file and a WARNING.
    """
    event_frame = read_parquet_frame(Path(events), EVENT_INPUT_COLUMNS, stage="preprocess")
    if event_frame.empty:
        logger.warning("events file %s has no rows; writing an empty session labels file", events)

    review_frame, review_counts = load_reviews(Path(reviews), dict(cfg.labels.review_labels))
    truth = load_ground_truth(Path(ground_truth), Pseudonymizer.from_config(cfg.data))

    sessions = summarize_sessions(event_frame, compile_honeypot_patterns(list(cfg.labels.honeypot_patterns)))
    sessions["declared_crawler"] = detect_declared_crawlers(sessions["user_agent"])
    labels = resolve_labels(sessions, review_frame, truth)
    write_labels(labels, Path(session_labels))

    summary = summarize_labels(labels, review_frame, truth, review_counts)
    write_report(summary, Path(report))
    logger.info(
        "labels: %d sessions, %d positives, %d negatives, per source %s, wrote %s",
        summary["sessions"], summary["positives"], summary["negatives"],
        summary["sessions_per_label_source"], session_labels,
    )
    return summary


app = typer.Typer(add_completion=False, help="Give every session a weak bot/human label.")


@app.command()
def main(
    events: Path = typer.Argument(..., help="Sessionized events parquet written by the preprocess stage."),
    reviews: Path = typer.Argument(..., help="Human reviews CSV (header only when there are none)."),
    ground_truth: Path = typer.Argument(..., help="Simulator ground-truth CSV; a missing file means no simulator labels."),
    session_labels: Path = typer.Argument(..., help="Output: one label row per session, parquet."),
    report: Path = typer.Argument(..., help="Output: JSON report of the stage."),
    params: Path = typer.Option(Path(PARAMS_FILE), "--params", help="Params file composed from conf/."),
) -> None:
    """Run the labels stage."""
    configure_logging()
    build_labels(events, reviews, ground_truth, session_labels, report, load_params(params))


if __name__ == "__main__":
    app()
