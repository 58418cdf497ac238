"""Release path in the test environment: a good candidate is promoted, broken ones are refused.

Every run uses its own temp folder as paths.root and its own SQLite MLflow store, so no
repository store is touched. The simulation and the model are smaller than the
defaults to keep each dry run short.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from omegaconf import DictConfig

from src.data.schema import REVIEW_COLUMNS
from src.release.orchestrate import EXIT_CODES, GATE, SMOKE_TEST, release
from src.release.service_process import SmokeTestError
from src.release.settings import ReleaseSettings, compose_release_config
from src.release.smoke import smoke_test
from src.review.build import queue_from_click_store
from src.review.queue import ReviewQueue
from src.review.settings import ReviewSettings
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

FAST_OVERRIDES = [
    "release.pipeline.simulate_scale=0.3",
    "evaluate.holdout_scale=0.2",
    "model.num_boost_round=80",
    "model.early_stopping_rounds=10",
    "release.smoke.replay_max_lines=600",
]


def release_overrides(root: Path) -> list[str]:
    """Overrides that put every store and output of the test environment under `root`."""
    reviews = root / "reviews.csv"
    if not reviews.exists():
        root.mkdir(parents=True, exist_ok=True)
        reviews.write_text(",".join(REVIEW_COLUMNS) + "\n", encoding="utf-8")
    return [
        f"paths.root={root}",
        f"paths.reviews={reviews}",
        f"mlflow.tracking_uri=sqlite:///{root / 'mlflow.db'}",
        f"mlflow.artifact_root={root / 'mlartifacts'}",
        *FAST_OVERRIDES,
    ]


def champion(cfg: DictConfig) -> str | None:
    client = MlflowClient(tracking_uri=str(cfg.mlflow.tracking_uri))
    found = client.get_registered_model(str(cfg.mlflow.registered_model)).aliases
    return None if "champion" not in found else str(found["champion"])


def version_tag(cfg: DictConfig, version: str, key: str) -> str | None:
    client = MlflowClient(tracking_uri=str(cfg.mlflow.tracking_uri))
    return client.get_model_version(str(cfg.mlflow.registered_model), version).tags.get(key)


@pytest.fixture(scope="module")
def env_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("release_env")


@pytest.fixture(autouse=True)
def own_tracking_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("BOTCLICK_ENV", raising=False)


@pytest.fixture(scope="module")
def first_release(env_root: Path):
    """The first release into an empty test environment."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    cfg = compose_release_config("test", release_overrides(env_root))
    return cfg, release(cfg)


def test_good_candidate_promoted(first_release):
    cfg, report = first_release
    assert report.failed_step is None, report.message
    assert report.promoted
    assert report.exit_code == 0
    assert [step.name for step in report.steps] == ["pipeline", "smoke_test", "gate"]
    assert report.champion_before is None
    assert champion(cfg) == report.candidate_version
    assert version_tag(cfg, report.candidate_version, "release_status") == "promoted"


def test_smoke_detail_recorded(first_release):
    cfg, report = first_release
    written = json.loads(ReleaseSettings.from_config(cfg).report.read_text(encoding="utf-8"))
    smoke = written["steps"][1]["detail"]
    assert written["promoted"] is True
    assert smoke["events"] == 600
    assert smoke["max_abs_difference"] <= 1e-6
    assert smoke["p99_latency_ms"] > 0


def test_smoke_click_store_feeds_review_queue(first_release, env_root):
    """The clicks the smoke-tested service stored are queued for review, explained by the candidate."""
    cfg, report = first_release
    store = ReleaseSettings.from_config(cfg).workdir / "smoke" / "clicks.db"
    review_cfg = compose_release_config(
        "test", [*release_overrides(env_root), f"serve.store.url=sqlite:///{store}", f"review.queue_path={env_root / 'review.db'}"]
    )
    settings = ReviewSettings.from_config(review_cfg)

    summary = queue_from_click_store(review_cfg, settings)

    assert summary.flagged > 0
    item = ReviewQueue(settings.queue_path).next_item(set())
    assert item.reason == "flagged"
    assert item.model_version == report.candidate_version
    assert item.top_reasons
    assert item.origin == "click_store:clicks"
    assert item.requests and item.requests[0]["path"].startswith("/")


def test_release_uses_env_test_paths(first_release, env_root):
    cfg, _ = first_release
    assert str(cfg.env.name) == "test"
    assert (env_root / "data/features/features.parquet").is_file()
    assert (env_root / "logs/simulated/access.log").is_file()


def test_parity_failure_refused(first_release, env_root):
    cfg_before, first = first_release
    skewed = [*release_overrides(env_root), "release.smoke.service_overrides=['data.preprocess.inactivity_gap_s=5']"]
    cfg = compose_release_config("test", skewed)

    report = release(cfg)

    assert not report.promoted
    assert report.failed_step == SMOKE_TEST
    assert "parity failed" in report.message
    assert report.exit_code == EXIT_CODES[SMOKE_TEST]
    assert report.candidate_version != first.candidate_version
    assert champion(cfg) == first.candidate_version
    assert report.champion_after == first.candidate_version
    assert version_tag(cfg, report.candidate_version, "release_status") == "failed_smoke_test"
    assert version_tag(cfg, report.candidate_version, "role") == "candidate"


def test_service_start_failure_refused(first_release, env_root):
    cfg_first, first = first_release
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = compose_release_config("test", [*release_overrides(env_root), f"release.smoke.port={port}"])
        with pytest.raises(SmokeTestError, match="exited with code"):
            smoke_test(cfg, ReleaseSettings.from_config(cfg), first.candidate_version)
    assert champion(cfg) == first.candidate_version


def test_cli_gate_refusal_exits_nonzero(first_release, env_root):
    cfg, first = first_release
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "BOTCLICK_ENV")}
    result = subprocess.run(
        [sys.executable, "-m", "src.release", "--env", "test", *release_overrides(env_root), "monitor.gate.min_improvement=0.5"],
        capture_output=True, text=True, timeout=900, env=env, cwd=REPO_ROOT,
    )
    assert result.returncode == EXIT_CODES[GATE], result.stderr[-3000:]
    assert "release FAILED" in result.stderr
    assert "not promoted" in result.stderr
    assert champion(cfg) == first.candidate_version
