"""End to end on the real access logs: line accounting, metrics and the registered model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.helpers import run_stages, workdir_config

pytestmark = [pytest.mark.slow, pytest.mark.real_logs]


@pytest.fixture(scope="module")
def real_run(real_logs_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("real_pipeline")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    cfg = workdir_config(workdir, real_logs_dir, ["data.log_globs=['*.log']"])
    metrics = run_stages(cfg)
    yield workdir, cfg, metrics
    monkeypatch.undo()


def test_every_line_accounted_for(real_run):
    workdir, _, _ = real_run
    totals = json.loads((workdir / "reports/collect.json").read_text())["totals"]
    assert totals["lines"] == 20_000
    assert totals["parsed"] + totals["quarantined"] == totals["lines"]


def test_truncated_line_quarantined(real_run):
    workdir, _, _ = real_run
    entries = [json.loads(line) for line in (workdir / "data/raw/quarantine.jsonl").read_text().splitlines()]
    truncated = [e for e in entries if e["file"].endswith("semicomplete-2015-05.log") and e["line_no"] == 8899]
    assert len(truncated) == 1
    assert truncated[0]["reason"]


def test_metrics_have_every_scorer_and_level(real_run):
    workdir, cfg, metrics = real_run
    written = json.loads((workdir / "reports/metrics.json").read_text())
    assert written == json.loads(json.dumps(metrics))
    assert set(written) == {"model", "ua_list", "rate_rule", "families"}
    for scorer in ("model", "ua_list", "rate_rule"):
        for level in ("session", "click"):
            assert set(written[scorer][level]) == {"roc_auc", "pr_auc", "recall_at_1pct_fpr", "masked_ua_recall_at_1pct_fpr"}


def test_model_beats_baselines_on_masked_recall(real_run):
    _, _, metrics = real_run
    ours = metrics["model"]["session"]["masked_ua_recall_at_1pct_fpr"]
    assert ours > metrics["ua_list"]["session"]["masked_ua_recall_at_1pct_fpr"]
    assert ours > metrics["rate_rule"]["session"]["masked_ua_recall_at_1pct_fpr"]


def test_champion_returns_probabilities(real_run):
    workdir, cfg, _ = real_run
    model = mlflow.pyfunc.load_model(f"models:/{cfg.mlflow.registered_model}@{cfg.mlflow.champion_alias}")
    features = pd.read_parquet(workdir / "data/features/features.parquet").head(200)
    names = list(cfg.features.names)
    scores = np.asarray(model.predict(features[names].astype("float64")))
    assert scores.shape == (200,)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert len(np.unique(scores)) > 2


def test_baselines_logged_in_same_experiment(real_run):
    _, cfg, _ = real_run
    client = MlflowClient()
    experiment = client.get_experiment_by_name(str(cfg.mlflow.experiment))
    runs = client.search_runs([experiment.experiment_id])
    names = {run.info.run_name for run in runs}
    assert {"xgboost", "baseline-ua-list", "baseline-request-rate"} <= names
    model_run = next(run for run in runs if run.info.run_name == "xgboost")
    assert "data_version" in model_run.data.tags
    assert "git_commit" in model_run.data.tags
    assert "session_masked_ua_recall_at_1pct_fpr" in model_run.data.metrics


def stored_text(folder: Path) -> str:
    """Return every stored value under `folder` as text, decoding parquet files."""
    parts = []
    for path in folder.rglob("*"):
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            parts.append(frame.astype(str).to_csv(index=False))
        elif path.is_file():
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


def test_no_raw_ip_in_outputs(real_run, real_logs_dir: Path):
    workdir, _, _ = real_run
    raw_ips = set()
    for log in real_logs_dir.glob("*.log"):
        raw_ips |= {line.split(" ", 1)[0] for line in log.read_text(errors="replace").splitlines() if line}
    stored = stored_text(workdir / "data") + stored_text(workdir / "reports")
    tokens = set(re.findall(r"[0-9A-Fa-f:.]{3,}", stored))
    leaked = sorted(raw_ips & tokens)
    assert leaked == []
