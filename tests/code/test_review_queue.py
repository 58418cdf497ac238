"""Review queue: which sessions are queued, their evidence, skips, and appends to reviews.csv.

`label_pipeline` runs collect, preprocess and labels on a small simulation without
ground truth, so most sessions are presumed human; the review tests build on it.
"""

from __future__ import annotations

import csv
import multiprocessing
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import DictConfig

from src.config import compose_config
from src.data.schema import REVIEW_COLUMNS
from src.review.build import queue_from_scores
from src.review.desk import ReviewDesk
from src.review.evidence import QueueSummary, items_from_clicks, pick_scored_sessions
from src.review.queue import FLAGGED, UNCERTAIN, ReviewQueue
from src.review.reviews import append_review, make_record, reviewed_session_ids
from src.review.settings import ReviewConfigError, ReviewSettings
from src.serve.batch_score import SCORE_COLUMNS
from tests.helpers import workdir_config

SIMULATION_SCALE = 0.2
REVIEW_HEADER = ",".join(REVIEW_COLUMNS)


def label_pipeline(workdir: Path) -> tuple[DictConfig, pd.DataFrame]:
    """Simulate a little traffic and run collect, preprocess and labels; return the config and labels.

    The ground truth is left out, so sessions that no honeypot or crawler rule labels
    are presumed human (label_source "none").
    """
    from src.data.collect import collect
    from src.data.preprocess import preprocess
    from src.data.simulate import simulate

    logs = workdir / "logs"
    simulate(compose_config(), logs, scale=SIMULATION_SCALE)
    cfg = workdir_config(
        workdir,
        logs,
        [
            f"paths.ground_truth={workdir / 'no_ground_truth.csv'}",
            f"++review.queue_path={workdir / 'review/queue.db'}",
            "data.mix_simulated=false",
        ],
    )
    p = {key: Path(str(value)) for key, value in cfg.paths.items()}
    collect(p["log_dir"], p["raw_events"], p["quarantine"], p["collect_report"], cfg)
    preprocess(p["raw_events"], p["events"], p["preprocess_report"], cfg)
    return cfg, rerun_labels(cfg)


def rerun_labels(cfg: DictConfig) -> pd.DataFrame:
    """Run the labels stage again, as the next `dvc repro` does after reviews.csv changed."""
    from src.data.labels import build_labels

    p = {key: Path(str(value)) for key, value in cfg.paths.items()}
    build_labels(p["events"], p["reviews"], p["ground_truth"], p["session_labels"], p["labels_report"], cfg)
    return pd.read_parquet(p["session_labels"])


def presumed_human_sessions(labels: pd.DataFrame, count: int) -> list[str]:
    """Return `count` presumed-human sessions with several requests."""
    chosen = labels[(labels["label_source"] == "none") & (labels["n_requests"] >= 3)].sort_values("session_id")
    assert len(chosen) >= count, f"the simulation has only {len(chosen)} presumed-human sessions"
    return chosen["session_id"].head(count).tolist()


def flagged_score_table(labels: pd.DataFrame, session_ids: list[str], path: Path) -> Path:
    """Write a score table, as `botclick score` does, in which the model flagged these sessions."""
    rows = labels.set_index("session_id").loc[session_ids].reset_index()
    table = pd.DataFrame(
        {
            "client_id": rows["client_id"], "session_id": rows["session_id"], "session_start": rows["session_start"],
            "session_end": rows["session_end"], "n_requests": rows["n_requests"], "bot_probability": 0.93,
            "decision": "flag", "top_features": "requests per minute = 42 (+1.10); share of page requests = 1 (+0.40)",
        }
    )  # fmt: skip
    table[SCORE_COLUMNS].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[DictConfig, pd.DataFrame]:
    return label_pipeline(tmp_path_factory.mktemp("review_pipeline"))


@pytest.fixture()
def settings(tmp_path: Path) -> ReviewSettings:
    cfg = compose_config([f"paths.reviews={tmp_path / 'reviews.csv'}", f"++review.queue_path={tmp_path / 'queue.db'}"])
    return ReviewSettings.from_config(cfg)


def score_rows(rows: list[tuple[str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {"session_id": [r[0] for r in rows], "bot_probability": [r[1] for r in rows], "decision": [r[2] for r in rows], "top_features": ""}
    )


def test_pick_flagged_and_uncertain(settings):
    scores = score_rows([("a", 0.95, "flag"), ("b", 0.5, "allow"), ("c", 0.1, "allow"), ("d", 0.2, "block"), ("e", 0.7, "allow")])
    summary = QueueSummary()
    picked = pick_scored_sessions(scores, settings, summary)
    assert dict(zip(picked["session_id"], picked["reason"])) == {"a": FLAGGED, "b": UNCERTAIN, "d": FLAGGED, "e": UNCERTAIN}
    assert summary.not_picked == 1


def test_pick_counts_invalid_probability(settings):
    scores = score_rows([("a", 0.95, "flag")])
    scores = pd.concat([scores, pd.DataFrame({"session_id": ["x", "y"], "bot_probability": ["n/a", 1.5], "decision": "flag", "top_features": ""})])
    summary = QueueSummary()
    picked = pick_scored_sessions(scores, settings, summary)
    assert picked["session_id"].tolist() == ["a"]
    assert summary.dropped == {"invalid_bot_probability": 2}
    assert summary.rows_read == 3


def test_pick_rejects_table_without_columns(settings):
    with pytest.raises(ValueError, match="botclick score"):
        pick_scored_sessions(pd.DataFrame({"session_id": ["a"]}), settings, QueueSummary())


def test_uncertain_band_checked(tmp_path):
    cfg = compose_config(["++review.uncertain_low=0.8", "++review.uncertain_high=0.2"])
    with pytest.raises(ReviewConfigError, match="uncertain_low"):
        ReviewSettings.from_config(cfg)


def test_queue_from_scores_keeps_evidence(pipeline, tmp_path):
    cfg, labels = pipeline
    session_ids = presumed_human_sessions(labels, 2)
    scores = flagged_score_table(labels, session_ids, tmp_path / "scores.csv")
    settings = ReviewSettings.from_config(cfg)

    summary = queue_from_scores(cfg, settings, scores, model_version="7")

    assert summary.flagged == 2
    item = ReviewQueue(settings.queue_path).get(session_ids[0])
    assert item is not None
    expected = labels.set_index("session_id").loc[session_ids[0]]
    assert item.n_requests == expected["n_requests"]
    assert len(item.requests) == min(expected["n_requests"], settings.max_requests_per_item)
    assert item.model_version == "7"
    assert item.top_reasons == ["requests per minute = 42 (+1.10)", "share of page requests = 1 (+0.40)"]
    assert item.client_id == expected["client_id"]
    assert set(item.requests[0]) == {"ts", "method", "path", "status", "referrer", "kind"}


def test_queue_evidence_has_no_raw_ip(pipeline, tmp_path):
    cfg, labels = pipeline
    session_ids = presumed_human_sessions(labels, 2)
    queue_from_scores(cfg, ReviewSettings.from_config(cfg), flagged_score_table(labels, session_ids, tmp_path / "s.csv"), model_version="7")
    raw_log = (Path(str(cfg.paths.log_dir)) / "access.log").read_text(encoding="utf-8")
    addresses = {line.split(" ", 1)[0] for line in raw_log.splitlines()[:2000]}
    stored = Path(ReviewSettings.from_config(cfg).queue_path).read_bytes().decode("utf-8", "replace")
    leaked = [address for address in addresses if address in stored]
    assert leaked == []


def test_queue_drops_sessions_without_events(pipeline, tmp_path):
    cfg, labels = pipeline
    session_ids = presumed_human_sessions(labels, 1)
    scores = flagged_score_table(labels, session_ids, tmp_path / "scores.csv")
    table = pd.read_csv(scores, dtype={"session_id": str})
    table.loc[len(table)] = table.iloc[0].to_dict() | {"session_id": "0000000000000000-1"}
    table.to_csv(scores, index=False)

    summary = queue_from_scores(cfg, ReviewSettings.from_config(cfg), scores, model_version="7")

    assert summary.dropped == {"no_events": 1}
    assert summary.flagged == 1


def test_queue_skip_is_remembered(settings):
    queue = ReviewQueue(settings.queue_path)
    clicks = pd.DataFrame(
        {
            "session_id": ["s1", "s1", "s2"], "ts": pd.to_datetime(["2026-11-02T10:00:00Z", "2026-11-02T10:00:05Z", "2026-11-02T11:00:00Z"]),
            "client_id": ["c1", "c1", "c2"], "user_agent": ["ua", "ua", "ua2"], "method": "GET", "path": ["/", "/go/x", "/"],
            "status": [200, 302, 200], "referrer": "", "kind": ["page", "affiliate", "page"],
            "bot_probability": [0.2, 0.97, 0.55], "decision": ["allow", "flag", "allow"], "model_version": "3",
        }
    )  # fmt: skip
    items, summary = items_from_clicks(clicks, settings, "click_store:clicks", lambda session, click: ["reason"])
    queue.add(items)
    desk = ReviewDesk(settings, "ana")

    assert [i.session_id for i in items] == ["s1", "s2"]
    assert summary.flagged == 1
    assert summary.uncertain == 1
    assert desk.next_item().session_id == "s1"
    desk.skip("s1")
    assert desk.next_item().session_id == "s2"
    assert ReviewDesk(settings, "ana", include_skipped=True).next_item().session_id == "s1"
    assert desk.progress() == {"queued": 2, "reviewed": 0, "skipped": 1, "pending": 1}
    assert not settings.reviews_path.exists()


def test_queue_refresh_keeps_skip(settings):
    clicks = pd.DataFrame(
        {"session_id": ["s1"], "ts": pd.to_datetime(["2026-11-02T10:00:00Z"]), "client_id": ["c1"], "user_agent": ["ua"],
         "method": "GET", "path": ["/"], "status": [200], "referrer": "", "kind": ["page"], "bot_probability": [0.99],
         "decision": ["block"], "model_version": "3"}
    )  # fmt: skip
    items, _ = items_from_clicks(clicks, settings, "click_store:clicks", lambda session, click: [])
    queue = ReviewQueue(settings.queue_path)
    queue.add(items)
    queue.skip("s1", "ana")
    queue.add(items)
    assert queue.get("s1").skipped_at is not None
    assert queue.clear_skips() == 1
    assert queue.get("s1").skipped_at is None


def test_append_writes_header_once(settings):
    path = settings.reviews_path
    for session, label in (("s1", "bot"), ("s2", "human")):
        append_review(path, make_record(session, label, "ana", "3", "", settings.review_labels))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == REVIEW_HEADER
    assert [line.split(",")[:3] for line in lines[1:]] == [["s1", "bot", "ana"], ["s2", "human", "ana"]]
    assert reviewed_session_ids(path) == {"s1", "s2"}


def test_append_keeps_earlier_rows_byte_for_byte(settings):
    path = settings.reviews_path
    earlier = f"{REVIEW_HEADER}\nold-1,human,bob,2026-11-01T00:00:00+00:00,1,\"kept, as is\""
    path.write_text(earlier, encoding="utf-8")
    append_review(path, make_record("s9", "bot", "ana", "3", "note with\nnew line", settings.review_labels))
    text = path.read_text(encoding="utf-8")
    assert text.startswith(earlier + "\n")
    rows = list(csv.DictReader(text.splitlines()))
    assert rows[-1]["note"] == "note with new line"


def test_append_rejects_wrong_header(settings):
    settings.reviews_path.write_text("session,label\n", encoding="utf-8")
    with pytest.raises(ValueError, match="header"):
        append_review(settings.reviews_path, make_record("s1", "bot", "ana", "3", "", settings.review_labels))


def test_make_record_rejects_unknown_label(settings):
    with pytest.raises(ValueError, match="maybe"):
        make_record("s1", "maybe", "ana", "3", "", settings.review_labels)


def _append_many(path: str, worker: int, count: int) -> None:
    labels = {"bot": 1, "human": 0}
    for index in range(count):
        append_review(Path(path), make_record(f"w{worker}-{index}", "bot", f"worker{worker}", "1", "x" * 200, labels))


def test_append_from_processes_loses_no_row(settings):
    workers, count = 4, 50
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_append_many, args=(str(settings.reviews_path), w, count)) for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    rows = list(csv.DictReader(settings.reviews_path.read_text(encoding="utf-8").splitlines()))
    assert len(rows) == workers * count
    assert {row["session_id"] for row in rows} == {f"w{w}-{i}" for w in range(workers) for i in range(count)}
