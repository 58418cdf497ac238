"""Tests for the labels stage: label precedence, reviews, ground truth and crawler detection."""

from __future__ import annotations

import csv
import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import DictConfig
from typer.testing import CliRunner

from src.config import compose_config, write_params
from src.data.labels import app, build_labels
from src.data.preprocess import preprocess
from src.data.pseudonymize import Pseudonymizer
from src.data.schema import LABEL_COLUMNS, LABEL_SOURCES, RAW_EVENT_SCHEMA, REVIEW_COLUMNS
from src.features.sessions import client_key

T0 = datetime(2026, 11, 2, 10, 0, 0, tzinfo=timezone.utc)
CHROME_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
GOOGLEBOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GROUND_TRUTH_HEADER = ["ip", "user_agent", "family", "is_bot", "automated"]
HONEYPOT_OVERRIDE = "labels.honeypot_patterns=['^/trap/']"
LOG_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "access_logs"


def raw_event(second: float, line_no: int, client_id: str, **fields: object) -> dict[str, object]:
    """Return one raw event row of `client_id`; `fields` override the defaults."""
    row: dict[str, object] = {
        "ts": T0 + timedelta(seconds=second),
        "client_id": client_id,
        "prefix_id": "beef000000000001",
        "method": "GET",
        "path": "/",
        "protocol": "HTTP/1.1",
        "status": 200,
        "bytes": 512,
        "referrer": "",
        "user_agent": CHROME_UA,
        "source": "access.log",
        "line_no": line_no,
        "source_format": "combined",
    }
    row.update(fields)
    return row


def write_reviews(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write a reviews CSV with REVIEW_COLUMNS; missing cells are empty."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=REVIEW_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_ground_truth(path: Path, rows: list[dict[str, object]]) -> Path:
    """Write a simulator ground-truth CSV."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=GROUND_TRUTH_HEADER)
        writer.writeheader()
        writer.writerows(rows)
    return path


class LabelRun:
    """Files of one labels run in tmp_path: raw events → preprocess → labels."""

    def __init__(self, tmp_path: Path, cfg: DictConfig | None = None) -> None:
        self.dir = tmp_path
        self.cfg = cfg if cfg is not None else compose_config(["data.mix_simulated=false"])
        self.events = tmp_path / "events.parquet"
        self.reviews = write_reviews(tmp_path / "reviews.csv", [])
        self.ground_truth = tmp_path / "ground_truth.csv"
        self.labels = tmp_path / "labels" / "session_labels.parquet"
        self.report = tmp_path / "reports" / "labels.json"

    def preprocess(self, rows: list[dict[str, object]]) -> pd.DataFrame:
        """Write `rows` as raw events, run preprocess and return the events."""
        raw = self.dir / "raw.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=RAW_EVENT_SCHEMA), raw)
        preprocess(raw, self.events, self.dir / "preprocess.json", self.cfg)
        return pd.read_parquet(self.events)

    def label(self) -> tuple[pd.DataFrame, dict]:
        """Run the labels stage and return the labels indexed by session id, and the report."""
        returned = build_labels(self.events, self.reviews, self.ground_truth, self.labels, self.report, self.cfg)
        report = json.loads(self.report.read_text(encoding="utf-8"))
        assert report == returned
        return pd.read_parquet(self.labels).set_index("session_id", drop=False), report


def session_of(events: pd.DataFrame, client_id: str) -> str:
    """Return the only session id of one client pseudonym in `events`."""
    ids = events.loc[events["client_id"] == client_id, "session_id"].unique()
    assert len(ids) == 1, f"expected one session for {client_id}, got {list(ids)}"
    return str(ids[0])


def test_labels_file_columns_and_types(tmp_path: Path) -> None:
    run = LabelRun(tmp_path)
    run.preprocess([raw_event(0, 1, "c1"), raw_event(60, 2, "c1")])

    labels, _ = run.label()
    schema = pq.read_schema(run.labels)
    row = labels.iloc[0]

    assert schema.names == LABEL_COLUMNS
    assert schema.field("label").type == pa.int64()
    assert schema.field("declared_crawler").type == pa.bool_()
    assert row["n_requests"] == 2
    assert row["session_start"] == pd.Timestamp(T0)
    assert row["session_end"] == pd.Timestamp(T0 + timedelta(seconds=60))
    assert row["client_id"] == "c1"
    assert row["source"] == "access.log"


def test_declared_crawler_from_crawlerdetect(tmp_path: Path) -> None:
    run = LabelRun(tmp_path)
    events = run.preprocess([
        raw_event(0, 1, "google", user_agent=GOOGLEBOT_UA),
        raw_event(0, 2, "chrome", user_agent=CHROME_UA),
    ])

    labels, report = run.label()
    google, chrome = labels.loc[session_of(events, "google")], labels.loc[session_of(events, "chrome")]

    assert bool(google["declared_crawler"]) is True
    assert google["label"] == 1
    assert google["label_source"] == "declared_crawler"
    assert google["family"] == "declared_crawler"
    assert bool(chrome["declared_crawler"]) is False
    assert chrome["label"] == 0
    assert chrome["label_source"] == "none"
    assert chrome["family"] == ""
    assert report["declared_crawler_sessions"] == 1


def test_honeypot_path_labels_bot(tmp_path: Path) -> None:
    run = LabelRun(tmp_path, compose_config([HONEYPOT_OVERRIDE]))
    events = run.preprocess([
        raw_event(0, 1, "trapped", path="/blog/post"),
        raw_event(3, 2, "trapped", path="/trap/do-not-follow?x=1"),
        raw_event(0, 3, "reader", path="/blog/trap/article"),  # not at the start: no match
    ])

    labels, report = run.label()
    trapped, reader = labels.loc[session_of(events, "trapped")], labels.loc[session_of(events, "reader")]

    assert trapped["label_source"] == "honeypot"
    assert trapped["label"] == 1
    assert trapped["family"] == "honeypot"
    assert reader["label_source"] == "none"
    assert report["honeypot_sessions"] == 1


def test_simulator_ground_truth_joined_by_pseudonym(tmp_path: Path) -> None:
    run = LabelRun(tmp_path)
    pseudonymizer = Pseudonymizer.from_config(run.cfg.data)
    bot_ip, human_ip = "198.51.100.23", "203.0.113.80"
    bot_id, human_id = pseudonymizer.client_id(bot_ip), pseudonymizer.client_id(human_ip)
    events = run.preprocess([
        raw_event(0, 1, bot_id, user_agent=CHROME_UA),
        raw_event(4000, 2, bot_id, user_agent=CHROME_UA),  # second session of the same client
        raw_event(0, 3, bot_id, user_agent=GOOGLEBOT_UA),  # same IP, other client: not in the truth
        raw_event(0, 4, human_id, user_agent=""),
    ])
    write_ground_truth(run.ground_truth, [
        {"ip": bot_ip, "user_agent": CHROME_UA, "family": "click_fraud", "is_bot": 1, "automated": 1},
        {"ip": human_ip, "user_agent": "-", "family": "human", "is_bot": 0, "automated": 0},
        {"ip": "192.0.2.1", "user_agent": CHROME_UA, "family": "human", "is_bot": 0, "automated": 0},
    ])

    labels, report = run.label()
    bot_key = client_key(bot_id, CHROME_UA)
    bot_sessions = labels[labels["client_key"] == bot_key]
    human = labels.loc[session_of(events, human_id)]
    crawler = labels[(labels["client_id"] == bot_id) & (labels["client_key"] != bot_key)].iloc[0]

    assert len(bot_sessions) == 2
    assert bot_sessions["label_source"].tolist() == ["simulator", "simulator"]
    assert bot_sessions["label"].tolist() == [1, 1]
    assert bot_sessions["family"].tolist() == ["click_fraud", "click_fraud"]
    assert human["label_source"] == "simulator"
    assert human["label"] == 0
    assert human["family"] == "human"
    assert crawler["label_source"] == "declared_crawler"
    assert report["ground_truth_clients"] == 3
    assert report["ground_truth_clients_unmatched"] == 1


def test_missing_ground_truth_means_no_simulator_labels(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = LabelRun(tmp_path)
    run.preprocess([raw_event(0, 1, "c1")])

    with caplog.at_level(logging.INFO, logger="src.data.labels"):
        labels, report = run.label()

    assert labels["label_source"].tolist() == ["none"]
    assert report["ground_truth_clients"] == 0
    assert any(r.levelno == logging.INFO and "ground truth" in r.getMessage() for r in caplog.records)


def test_conflicting_ground_truth_rows_rejected(tmp_path: Path) -> None:
    run = LabelRun(tmp_path)
    run.preprocess([raw_event(0, 1, "c1")])
    write_ground_truth(run.ground_truth, [
        {"ip": "198.51.100.23", "user_agent": CHROME_UA, "family": "human", "is_bot": 0, "automated": 0},
        {"ip": "198.51.100.23", "user_agent": CHROME_UA, "family": "browser_bot", "is_bot": 1, "automated": 1},
    ])

    with pytest.raises(ValueError, match=r"rows \[1, 2\]") as info:
        run.label()
    assert "198.51.100.23" not in str(info.value)


def test_invalid_ground_truth_ip_names_row(tmp_path: Path) -> None:
    run = LabelRun(tmp_path)
    run.preprocess([raw_event(0, 1, "c1")])
    write_ground_truth(run.ground_truth, [
        {"ip": "198.51.100.23", "user_agent": CHROME_UA, "family": "human", "is_bot": 0, "automated": 0},
        {"ip": "198.51.100.999", "user_agent": CHROME_UA, "family": "human", "is_bot": 0, "automated": 0},
    ])

    with pytest.raises(ValueError, match="row 2") as info:
        run.label()
    assert "198.51.100.999" not in str(info.value)


def test_precedence_review_simulator_honeypot_crawler(tmp_path: Path) -> None:
    run = LabelRun(tmp_path, compose_config([HONEYPOT_OVERRIDE]))
    pseudonymizer = Pseudonymizer.from_config(run.cfg.data)
    ips = {"reviewed": "198.51.100.1", "simulated": "198.51.100.2"}
    ids = {name: pseudonymizer.client_id(ip) for name, ip in ips.items()}
    ids.update({"trap_crawler": "t1", "crawler": "t2", "human": "t3"})
    # Every client below is a declared crawler that also hit the honeypot, except the last two.
    events = run.preprocess([
        raw_event(0, 1, ids["reviewed"], user_agent=GOOGLEBOT_UA, path="/trap/a"),
        raw_event(0, 2, ids["simulated"], user_agent=GOOGLEBOT_UA, path="/trap/a"),
        raw_event(0, 3, ids["trap_crawler"], user_agent=GOOGLEBOT_UA, path="/trap/a"),
        raw_event(0, 4, ids["crawler"], user_agent=GOOGLEBOT_UA),
        raw_event(0, 5, ids["human"]),
    ])
    sessions = {name: session_of(events, cid) for name, cid in ids.items()}
    write_ground_truth(run.ground_truth, [
        {"ip": ip, "user_agent": GOOGLEBOT_UA, "family": "browser_bot", "is_bot": 0, "automated": 1}
        for ip in ips.values()
    ])
    write_reviews(run.reviews, [{"session_id": sessions["reviewed"], "label": "bot", "reviewed_at": "2026-11-03T09:00:00Z"}])

    labels, report = run.label()
    source = {name: labels.loc[sid, "label_source"] for name, sid in sessions.items()}
    label = {name: int(labels.loc[sid, "label"]) for name, sid in sessions.items()}

    assert source == {"reviewed": "review", "simulated": "simulator", "trap_crawler": "honeypot", "crawler": "declared_crawler", "human": "none"}
    assert label == {"reviewed": 1, "simulated": 0, "trap_crawler": 1, "crawler": 1, "human": 0}
    assert labels.loc[sessions["reviewed"], "family"] == "browser_bot"
    assert labels["declared_crawler"].tolist().count(True) == 4
    assert report["sessions_per_label_source"] == {s: 1 for s in LABEL_SOURCES}
    assert report["positives"] == 3
    assert report["negatives"] == 2
    assert report["reviews_applied"] == 1


def test_empty_reviews_file_works(tmp_path: Path) -> None:
    run = LabelRun(tmp_path)
    run.reviews.write_text(",".join(REVIEW_COLUMNS) + "\n", encoding="utf-8")
    run.preprocess([raw_event(0, 1, "c1")])

    labels, report = run.label()

    assert len(labels) == 1
    assert report["review_rows"] == 0
    assert report["reviews_applied"] == 0
    assert report["reviews_unmatched"] == 0


def test_latest_review_wins_and_unmatched_counted(tmp_path: Path) -> None:
    run = LabelRun(tmp_path)
    events = run.preprocess([raw_event(0, 1, "c1")])
    sid = session_of(events, "c1")
    write_reviews(run.reviews, [
        {"session_id": sid, "label": "human", "reviewed_at": "2026-11-03T12:00:00+01:00"},
        {"session_id": sid, "label": "bot", "reviewed_at": "2026-11-03T11:30:00Z"},  # later in UTC
        {"session_id": sid, "label": "human", "reviewed_at": "2026-11-03T10:00:00Z"},
        {"session_id": "gone-1700000000", "label": "bot", "reviewed_at": "2026-11-03T10:00:00Z"},
    ])

    labels, report = run.label()

    assert labels.loc[sid, "label"] == 1
    assert labels.loc[sid, "label_source"] == "review"
    assert report["review_rows"] == 4
    assert report["reviews_superseded"] == 2
    assert report["reviews_applied"] == 1
    assert report["reviews_unmatched"] == 1


def test_invalid_review_label_names_row_and_values(tmp_path: Path) -> None:
    run = LabelRun(tmp_path)
    events = run.preprocess([raw_event(0, 1, "c1")])
    sid = session_of(events, "c1")
    write_reviews(run.reviews, [
        {"session_id": sid, "label": "bot", "reviewed_at": "2026-11-03T10:00:00Z"},
        {"session_id": sid, "label": "maybe", "reviewed_at": "2026-11-03T11:00:00Z"},
    ])

    with pytest.raises(ValueError) as info:
        run.label()
    message = str(info.value)

    assert "row 2" in message
    assert "'maybe'" in message
    assert "bot" in message
    assert "human" in message


def test_invalid_reviewed_at_names_row(tmp_path: Path) -> None:
    run = LabelRun(tmp_path)
    run.preprocess([raw_event(0, 1, "c1")])
    write_reviews(run.reviews, [{"session_id": "x-1", "label": "bot", "reviewed_at": "yesterday"}])

    with pytest.raises(ValueError, match=r"'yesterday'.*row 1"):
        run.label()


def test_missing_events_names_preprocess_stage(tmp_path: Path) -> None:
    run = LabelRun(tmp_path)

    with pytest.raises(FileNotFoundError) as info:
        run.label()
    assert str(run.events) in str(info.value)
    assert "preprocess" in str(info.value)


def test_empty_events_write_empty_labels(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = LabelRun(tmp_path)
    run.preprocess([])

    with caplog.at_level(logging.WARNING, logger="src.data.labels"):
        labels, report = run.label()

    assert labels.empty
    assert pq.read_schema(run.labels).names == LABEL_COLUMNS
    assert report["sessions"] == 0
    assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_cli_reads_params_file(tmp_path: Path) -> None:
    run = LabelRun(tmp_path)
    run.preprocess([raw_event(0, 1, "c1", user_agent=GOOGLEBOT_UA)])
    params = write_params(run.cfg, tmp_path / "params.yaml")
    paths = [run.events, run.reviews, run.ground_truth, run.labels, run.report]

    result = CliRunner().invoke(app, [*map(str, paths), "--params", str(params)])

    assert result.exit_code == 0, result.output
    assert json.loads(run.report.read_text(encoding="utf-8"))["positives"] == 1


def run_pipeline(log_dir: Path, ground_truth: Path, tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict, dict]:
    """Run collect, preprocess and labels on `log_dir`; return events, labels and both reports."""
    collect = pytest.importorskip("src.data.collect", reason="src.data.collect is not available").collect
    cfg = compose_config(["data.mix_simulated=false"])
    run = LabelRun(tmp_path, cfg)
    raw = tmp_path / "clicks.parquet"
    collect(log_dir, raw, tmp_path / "quarantine.jsonl", tmp_path / "collect.json", cfg)
    preprocess_report = preprocess(raw, run.events, tmp_path / "preprocess.json", cfg)

    run.ground_truth = ground_truth
    labels, labels_report = run.label()
    return pd.read_parquet(run.events), labels, preprocess_report, labels_report


def assert_one_label_per_session(events: pd.DataFrame, labels: pd.DataFrame, report: dict) -> None:
    """Check that labels cover every session once and that the report counts add up."""
    assert labels["session_id"].is_unique
    assert set(labels["session_id"]) == set(events["session_id"])
    assert labels["n_requests"].sum() == len(events)
    assert report["sessions"] == len(labels)
    assert sum(report["sessions_per_label_source"].values()) == report["sessions"]
    assert report["positives"] + report["negatives"] == report["sessions"]
    assert set(labels["label"]) <= {0, 1}
    assert set(labels["label_source"]) <= set(LABEL_SOURCES)
    assert (labels["session_start"] <= labels["session_end"]).all()


@pytest.mark.real_logs
def test_real_logs_end_to_end(tmp_path: Path) -> None:
    if not LOG_DIR.is_dir():
        pytest.skip(f"real access logs not found at {LOG_DIR}")

    events, labels, preprocess_report, report = run_pipeline(LOG_DIR, tmp_path / "no_ground_truth.csv", tmp_path)
    crawler_sessions = labels[labels["declared_crawler"]]

    assert_one_label_per_session(events, labels, report)
    assert preprocess_report["rows_in"] == preprocess_report["rows_out"] + preprocess_report["duplicates_dropped"]
    assert report["sessions"] == preprocess_report["sessions"]
    assert report["sessions_per_label_source"]["simulator"] == 0
    assert report["sessions_per_label_source"]["declared_crawler"] > 0
    assert report["sessions_per_label_source"]["none"] > 0
    assert (crawler_sessions["label"] == 1).all()
    assert labels.loc[labels["label_source"] == "none", "family"].eq("").all()


def test_simulated_logs_end_to_end(tmp_path: Path) -> None:
    simulate = pytest.importorskip("src.data.simulate", reason="src.data.simulate is not available").simulate
    summary = simulate(compose_config(["data.mix_simulated=false"]), tmp_path / "logs", scale=0.05)

    events, labels, _, report = run_pipeline(tmp_path / "logs", summary.ground_truth_path, tmp_path)
    truth = pd.read_csv(summary.ground_truth_path, dtype=str, keep_default_na=False)
    is_bot_by_family = dict(zip(truth["family"], truth["is_bot"].astype(int), strict=True))

    assert_one_label_per_session(events, labels, report)
    assert report["sessions_per_label_source"]["simulator"] == report["sessions"]
    assert report["ground_truth_clients"] == len(truth)
    assert set(labels["family"]) <= set(is_bot_by_family)
    assert labels["label"].tolist() == labels["family"].map(is_bot_by_family).tolist()
