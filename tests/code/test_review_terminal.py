"""Terminal review: scripted keys drive the loop, and a CLI label changes the next labels run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from src.review.build import queue_from_scores
from src.review.desk import ReviewDesk
from src.review.settings import ReviewSettings
from src.review.terminal import key_map, review_in_terminal
from tests.code.test_review_queue import flagged_score_table, label_pipeline, presumed_human_sessions, rerun_labels

BOTCLICK = Path(sys.executable).with_name("botclick")


@pytest.fixture()
def queued(tmp_path: Path):
    """A fresh labels pipeline with three presumed-human sessions queued as flagged."""
    cfg, labels = label_pipeline(tmp_path)
    session_ids = presumed_human_sessions(labels, 3)
    settings = ReviewSettings.from_config(cfg)
    queue_from_scores(cfg, settings, flagged_score_table(labels, session_ids, tmp_path / "scores.csv"), model_version="5")
    return cfg, settings, sorted(session_ids)


def scripted(keys: list[str]):
    remaining = iter(keys)
    return lambda: next(remaining, "")


def review_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))


def test_key_map_has_labels_skip_quit():
    assert key_map(["bot", "human"]) == {"b": "bot", "h": "human", "s": "skip", "q": "quit"}


def test_key_map_rejects_clashing_labels():
    with pytest.raises(ValueError, match="key of its own"):
        key_map(["bot", "bad"])


def test_terminal_labels_skips_and_resumes(queued):
    cfg, settings, session_ids = queued
    console = Console(record=True, width=140)

    first = review_in_terminal(ReviewDesk(settings, "ana"), console, scripted(["x", "b", "s", "q"]))

    assert first.labelled == {"bot": 1}
    assert first.skipped == 1
    assert first.stopped_by == "quit"
    shown = console.export_text()
    assert "Unknown key 'x'" in shown
    assert session_ids[0] in shown
    assert "top reasons" in shown
    rows = review_rows(settings.reviews_path)
    assert [(r["session_id"], r["label"], r["reviewer"], r["model_version"]) for r in rows] == [(session_ids[0], "bot", "ana", "5")]

    second_console = Console(record=True, width=140)
    second = review_in_terminal(ReviewDesk(settings, "ana"), second_console, scripted(["h"]))

    assert second.labelled == {"human": 1}
    assert second.stopped_by == "done"
    assert session_ids[0] not in second_console.export_text()
    assert session_ids[1] not in second_console.export_text()
    assert [r["session_id"] for r in review_rows(settings.reviews_path)] == [session_ids[0], session_ids[2]]


def test_terminal_end_of_input_quits(queued):
    _, settings, _ = queued
    result = review_in_terminal(ReviewDesk(settings, "ana"), Console(record=True), scripted([]))
    assert result.stopped_by == "quit"
    assert not settings.reviews_path.read_text(encoding="utf-8").strip().splitlines()[1:]


@pytest.mark.skipif(not BOTCLICK.is_file(), reason=f"console script {BOTCLICK} is not installed; run `make install`")
def test_cli_label_changes_next_labels_run(queued, tmp_path):
    cfg, settings, session_ids = queued
    before = rerun_labels(cfg).set_index("session_id")
    assert before.loc[session_ids[0], "label_source"] == "none"
    assert before.loc[session_ids[0], "label"] == 0

    env = {k: v for k, v in os.environ.items() if k != "BOTCLICK_ENV"}
    result = subprocess.run(
        [str(BOTCLICK), "review", "--reviewer", "cli-tester", "--params", str(tmp_path / "params.yaml")],
        input="b\n", capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Labelled {session_ids[0]} as bot" in result.stdout

    after = rerun_labels(cfg).set_index("session_id")
    assert after.loc[session_ids[0], "label_source"] == "review"
    assert after.loc[session_ids[0], "label"] == 1
    assert after.loc[session_ids[1], "label_source"] == "none"
    assert review_rows(settings.reviews_path)[0]["reviewer"] == "cli-tester"
