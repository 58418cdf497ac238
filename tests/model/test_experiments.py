"""Smoke test of the training-data strategy experiments on a small simulation.

The "real" logs are a simulation with another seed and no ground truth file, so their
sessions get the labels real logs get: declared crawler, honeypot or presumed human.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from src.config import compose_config
from src.data.simulate import simulate
from src.data.sources import discover_log_files
from src.train.experiments import REPORT_BEGIN, REPORT_END, run_experiments, write_report

SMALL = ["simulate.scale=0.2", "evaluate.holdout_scale=0.2", "evaluate.strategy.seeds=[1]"]


@pytest.fixture(scope="module")
def experiment_run(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("experiments")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    cfg = compose_config([*SMALL, f"mlflow.artifact_root={workdir / 'mlartifacts'}"])

    real_dir = workdir / "real_logs"
    simulate(cfg, real_dir, seed=99)
    (real_dir / str(cfg.simulate.ground_truth_file)).unlink()
    log_files = discover_log_files(real_dir, list(cfg.data.log_globs), list(cfg.data.jsonl_globs))

    report = workdir / "experiments.md"
    report.write_text(f"# Notes\n\nhand-written text\n\n{REPORT_BEGIN}\nold\n{REPORT_END}\n\n## Label policy\n", encoding="utf-8")
    results = run_experiments(log_files, cfg, workdir / "work", report, "botclick experiments --logs-dir real_logs", ["pu_unlabeled_weight"])
    yield cfg, results, report
    monkeypatch.undo()


def test_reference_variant_always_runs(experiment_run) -> None:
    _, results, _ = experiment_run
    assert [r.variant.name for r in results] == ["mixed", "pu_unlabeled_weight"]


def test_each_variant_logged_as_run(experiment_run) -> None:
    cfg, results, _ = experiment_run
    client = MlflowClient()
    experiment = client.get_experiment_by_name(str(cfg.evaluate.strategy.mlflow_experiment))
    assert experiment is not None
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"mixed", "pu_unlabeled_weight"}
    for result in results:
        run = runs[result.variant.name]
        assert run.info.run_id == result.run_id
        assert run.data.params["variant"] == result.variant.name
        for name in ("session_masked_ua_recall_at_1pct_fpr", "click_masked_ua_recall_at_1pct_fpr", "session_pr_auc",
                     "flag_rate_presumed_human", "holdout_bot_recall_min", "holdout_recall_click_fraud"):
            assert name in run.data.metrics, f"{name} missing from run {result.variant.name}"


def test_metrics_are_rates(experiment_run) -> None:
    _, results, _ = experiment_run
    for result in results:
        for name in ("session_masked_ua_recall_at_1pct_fpr", "flag_rate_presumed_human", "holdout_bot_recall_mean"):
            assert 0.0 <= result.mean(name) <= 1.0, f"{result.variant.name} {name} = {result.mean(name)}"


def test_report_block_replaced_text_kept(experiment_run) -> None:
    _, _, report = experiment_run
    text = report.read_text(encoding="utf-8")
    assert text.startswith("# Notes\n\nhand-written text\n")
    assert text.rstrip().endswith("## Label policy")
    assert "\nold\n" not in text
    assert text.count(REPORT_BEGIN) == 1
    assert "| mixed |" in text
    assert "| pu_unlabeled_weight |" in text
    assert "- `pu_unlabeled_weight`: keep:" in text or "- `pu_unlabeled_weight`: drop:" in text


def test_report_created_when_missing(tmp_path: Path) -> None:
    report = tmp_path / "docs/experiments.md"
    write_report(report, f"{REPORT_BEGIN}\nnew\n{REPORT_END}")
    assert report.read_text(encoding="utf-8").count(REPORT_BEGIN) == 1
