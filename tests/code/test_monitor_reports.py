"""Monitoring reports, settings, retrain staging, CLI wiring and the shipped scheduler files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import DictConfig, OmegaConf
from typer.testing import CliRunner

from src.cli import app
from src.monitor.commands import current_log_files, expand_paths
from src.monitor.daily import build_daily_report, render_daily_markdown, write_daily_report
from src.monitor.drift import compute_drift
from src.monitor.retrain import merge_ground_truth, stage_input
from src.monitor.sessions import (
    SessionWindow,
    cap_sessions_per_client,
    select_days,
    user_agent_family,
    user_agent_family_only,
)
from src.monitor.settings import ExitCode, load_monitor_config
from src.monitor.summary import build_summary, write_summary
from src.serve.champion import LoadedModel
from src.train.model_io import ModelMeta
from tests.conftest import REPO_ROOT

FEATURES = ["n_requests", "request_rate_per_min"]


def sessions(rng: np.random.Generator, count: int, start: str = "2026-11-20") -> pd.DataFrame:
    """Scored session rows with the columns of `session_table` that the reports read."""
    clients = [f"{i:016x}" for i in rng.integers(0, 40, count)]
    return pd.DataFrame(
        {
            "session_id": [f"s{i}" for i in range(count)],
            "client_key": clients,
            "client_id": clients,
            "ts": pd.Timestamp(start, tz="UTC") + pd.to_timedelta(rng.uniform(0, 2 * 86400, count), unit="s"),
            "n_requests": rng.integers(1, 30, count).astype(float),
            "request_rate_per_min": rng.exponential(3, count),
            "user_agent_family": rng.choice(["Chrome 142", "Firefox 145", "Googlebot 2"], count),
            "affiliate_clicks": rng.integers(0, 3, count),
            "bot_probability": rng.uniform(0, 1, count),
        }
    )


@pytest.fixture()
def model() -> LoadedModel:
    meta = ModelMeta(feature_names=FEATURES, threshold=0.5, best_iteration=10, run_id="run-1", data_version="abc")
    return LoadedModel(booster=None, meta=meta, version="3")


def test_user_agent_family_names():
    assert user_agent_family("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36") == "Chrome 142"
    assert user_agent_family("-") == "(empty)"
    assert user_agent_family("") == "(empty)"
    assert user_agent_family("Feedly/1.0 (+http://www.feedly.com/fetcher.html)") == "Other"
    assert user_agent_family_only("Chrome Mobile 141") == "Chrome Mobile"
    assert user_agent_family_only("Other") == "Other"


def test_window_selection_and_client_cap():
    rows = sessions(np.random.default_rng(1), 300)
    last_day = select_days(rows, None, 1.0)
    assert last_day["ts"].min() > rows["ts"].max() - pd.Timedelta(days=1)
    assert len(select_days(rows, None, None)) == len(rows)
    capped = cap_sessions_per_client(rows, 2)
    assert capped.groupby("client_key").size().max() == 2
    latest = rows.sort_values("ts").groupby("client_key").tail(2)
    assert set(capped["session_id"]) == set(latest["session_id"])


def test_daily_report_counts(model: LoadedModel, cfg: DictConfig, tmp_path: Path):
    rows = sessions(np.random.default_rng(2), 400)
    end = rows["ts"].max()
    report = build_daily_report(rows, model, end, cfg, None)
    day = rows[rows["ts"] > end - pd.Timedelta(days=1)]
    flagged = day[day["bot_probability"] >= 0.5]

    counts = report["by_decision"]
    assert counts["total"]["sessions"] == len(day)
    assert counts["flag"]["sessions"] == len(flagged)
    assert counts["flag"]["affiliate_clicks"] + counts["allow"]["affiliate_clicks"] == day["affiliate_clicks"].sum()
    assert counts["flag"]["share_of_sessions"] == pytest.approx(len(flagged) / len(day))
    top = report["top_flagged_clients"]
    assert len(top) <= cfg.monitor.daily.top_clients
    assert [c["affiliate_clicks"] for c in top] == sorted((c["affiliate_clicks"] for c in top), reverse=True)
    assert {f["family"] for f in report["top_user_agent_families"]} <= {"Chrome", "Firefox", "Googlebot"}

    json_path, markdown_path = write_daily_report(report, tmp_path)
    assert json.loads(json_path.read_text())["model"]["version"] == "3"
    markdown = markdown_path.read_text()
    assert "no drift check has run yet" in markdown
    assert top[0]["client_id"] in markdown


def test_daily_report_without_flags(model: LoadedModel, cfg: DictConfig):
    rows = sessions(np.random.default_rng(3), 50).assign(bot_probability=0.1)
    report = build_daily_report(rows, model, rows["ts"].max(), cfg, {"date": "2026-11-21", "status": "drift", "decision": None, "report": "../drift/x/summary.md"})
    assert report["top_flagged_clients"] == []
    markdown = render_daily_markdown(report)
    assert "No session was flagged." in markdown
    assert "drift on 2026-11-21" in markdown


def test_drift_summary_files(model: LoadedModel, cfg: DictConfig, tmp_path: Path):
    rng = np.random.default_rng(4)
    reference = SessionWindow("reference", sessions(rng, 500, "2026-11-01"), "champion_run", notes=["training sample"])
    current = SessionWindow("current", sessions(rng, 500).assign(request_rate_per_min=lambda f: f["request_rate_per_min"] * 3), "logs", ["/logs/access.log"])
    result, _ = compute_drift(reference.sessions, current.sessions, FEATURES, ["user_agent_family"], "bot_probability", cfg.monitor.drift)
    summary = build_summary("drift", 10, "Drift: test.", model, (reference, current), {"reference": 500, "current": 500}, result, cfg)
    summary["files"] = {"json": "summary.json"}
    json_path, markdown_path = write_summary(summary, tmp_path)

    loaded = json.loads(json_path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in summary.json"))
    assert loaded["features"][0]["column"] == "request_rate_per_min"
    assert loaded["features"][0]["drifted"]
    assert loaded["windows"]["current"]["files"] == ["/logs/access.log"]
    markdown = markdown_path.read_text()
    assert markdown.startswith(f"# Drift check {loaded['date']}: drift")
    assert "| request_rate_per_min | numerical |" in markdown
    assert "Note: training sample." in markdown
    assert "## Decision" in markdown


def test_monitor_config_reads_conf_and_params(tmp_path: Path):
    params = tmp_path / "params.yaml"
    stale = {"paths": {"log_dir": "/srv/logs"}, "monitor": {"drift": {"prediction": {"column": "old"}}, "window": {"current_days": 99}}}
    params.write_text(OmegaConf.to_yaml(OmegaConf.create(stale)))
    cfg = load_monitor_config(params, ["monitor.window.current_days=2"])
    assert cfg.paths.log_dir == "/srv/logs"
    assert cfg.monitor.window.current_days == 2
    assert "column" not in cfg.monitor.drift.prediction

    with pytest.raises(ValueError, match="invalid --set"):
        load_monitor_config(params, ["monitor.window.current_dayz=2"])
    with pytest.raises(ValueError, match="invalid --set"):
        load_monitor_config(params, ["monitor.window.current_days"])


def test_expand_paths_and_fallback(tmp_path: Path, cfg: DictConfig):
    for name in ("access.log", "access.log.1", "notes.txt"):
        (tmp_path / name).write_text("x\n")
    assert expand_paths([str(tmp_path / "access.log*")]) == [tmp_path / "access.log", tmp_path / "access.log.1"]
    with pytest.raises(FileNotFoundError, match="no file matches"):
        expand_paths([str(tmp_path / "missing*.log")])

    pipeline_cfg = OmegaConf.merge(cfg, {"paths": {"log_dir": str(tmp_path)}, "monitor": {"current_logs": []}})
    assert current_log_files(None, pipeline_cfg) == [tmp_path / "access.log", tmp_path / "access.log.1"]
    configured = OmegaConf.merge(pipeline_cfg, {"monitor": {"current_logs": [str(tmp_path / "notes.txt")]}})
    assert current_log_files(None, configured) == [tmp_path / "notes.txt"]


def test_stage_input_links_and_merges(tmp_path: Path, cfg: DictConfig):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "access.log").write_text("old\n")
    (new / "access.log").write_text("new\n")
    header = "ip,user_agent,family,is_bot,automated\n"
    (old / "ground_truth.csv").write_text(header + "198.18.0.1,ua,human_desktop,0,0\n198.18.0.2,ua,form_spam,1,1\n")
    (new / "ground_truth.csv").write_text(header + "198.18.0.2,ua,human_desktop,0,0\n")
    run_cfg = OmegaConf.merge(cfg, {"paths": {"log_dir": str(old), "ground_truth": str(old / "ground_truth.csv")}})

    staged = stage_input(run_cfg, [new / "access.log"], [new / "ground_truth.csv"], tmp_path / "retrain")
    links = sorted(staged.log_dir.iterdir())
    assert [link.resolve() for link in links] == [old / "access.log", new / "access.log"]
    assert staged.new_sources == [f"input/{links[1].name}"]
    truth = pd.read_csv(staged.ground_truth, dtype=str)
    assert truth.set_index("ip").loc["198.18.0.2", "family"] == "human_desktop"
    assert len(truth) == 2

    again = stage_input(OmegaConf.merge(run_cfg, {"paths": {"log_dir": str(staged.log_dir)}, "data": {"log_globs": ["*"]}}), [new / "access.log"], [], tmp_path / "retrain")
    assert [link.resolve() for link in sorted(again.log_dir.iterdir())] == [old / "access.log", new / "access.log"]


def test_merge_ground_truth_without_files(tmp_path: Path):
    out = tmp_path / "truth.csv"
    assert merge_ground_truth([tmp_path / "missing.csv"], out) == 0
    assert out.read_text().startswith("ip,user_agent,family,is_bot,automated")


def test_cli_lists_monitor_commands():
    result = CliRunner().invoke(app, ["--help"])
    for command in ("drift-check", "promote", "rollback", "report"):
        assert command in result.output
    assert "daily" in CliRunner().invoke(app, ["report", "--help"]).output


def test_cli_missing_logs_exit_code(tmp_path: Path):
    result = CliRunner().invoke(app, ["drift-check", "--logs", str(tmp_path / "none*.log"), "--set", f"monitor.lock_file={tmp_path / 'lock'}"])
    assert result.exit_code == ExitCode.INVALID_INPUT


def test_systemd_files_run_retraining_daily():
    service = (REPO_ROOT / "deploy/systemd/botclick-drift-check.service").read_text()
    timer = (REPO_ROOT / "deploy/systemd/botclick-drift-check.timer").read_text()
    assert re.search(r"^ExecStart=\S+/botclick drift-check --retrain", service, re.MULTILINE)
    assert re.search(r"^SuccessExitStatus=10 20$", service, re.MULTILINE)
    assert re.search(r"^OnCalendar=\*-\*-\* \d\d:\d\d:\d\d", timer, re.MULTILINE)
    assert "Persistent=true" in timer


def test_docs_list_every_exit_code():
    docs = (REPO_ROOT / "docs/monitoring.md").read_text()
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \|", docs, re.MULTILINE), f"exit code {int(code)} ({code.name}) missing from docs/monitoring.md"
    assert "30 4 * * *" in docs
