"""Smoke-test checks of the release on small hand-made inputs: parity, latency, versions, replay lines."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from src.config import compose_config
from src.data.log_parser import LineError
from src.release.replay import batches, build_replay, event_from_line
from src.release.service_process import SmokeTestError, service_config
from src.release.settings import ReleaseConfigError, ReleaseSettings, compose_release_config
from src.release.smoke import check_latency, check_parity, check_versions

LINE = '198.18.0.7 - - [02/Nov/2026:10:00:00 +0000] "GET /go/tent-1 HTTP/1.1" 302 0 "https://shop.example/" "Mozilla/5.0"'


def served(rows: list[tuple[str, float]]) -> list[dict]:
    return [{"session_id": sid, "bot_probability": p, "model_version": "3", "fallback": False} for sid, p in rows]


def batch_scores(rows: list[tuple[str, float]]) -> pd.DataFrame:
    return pd.DataFrame({"session_id": [r[0] for r in rows], "bot_probability": [r[1] for r in rows]})


def test_parity_uses_last_result_per_session():
    results = served([("a", 0.1), ("b", 0.4), ("a", 0.9)])
    assert check_parity(results, batch_scores([("a", 0.9), ("b", 0.4)]), 1e-9) == 0.0


def test_parity_mismatch_named():
    results = served([("a", 0.1), ("b", 0.4)])
    with pytest.raises(SmokeTestError, match="1 of 2 sessions differ") as raised:
        check_parity(results, batch_scores([("a", 0.2), ("b", 0.4)]), 1e-6)
    assert "a: service 0.100000 vs batch 0.200000" in str(raised.value)


def test_parity_missing_session_named():
    with pytest.raises(SmokeTestError, match="1 only in the batch scores"):
        check_parity(served([("a", 0.1)]), batch_scores([("a", 0.1), ("b", 0.4)]), 1e-6)


def test_latency_bound():
    assert check_latency([5.0] * 99 + [9.0], 10.0) <= 10.0
    with pytest.raises(SmokeTestError, match="p99"):
        check_latency([5.0] * 90 + [50.0] * 10, 10.0)


def test_versions_reject_fallback_and_others():
    check_versions(served([("a", 0.1)]), "3")
    with pytest.raises(SmokeTestError, match="rules"):
        check_versions([{"session_id": "a", "bot_probability": 1.0, "model_version": "rules", "fallback": True}], "3")


def test_event_from_log_line():
    body = event_from_line(LINE, 8192, time.time())
    assert body["client_ip"] == "198.18.0.7"
    assert body["path"] == "/go/tent-1"
    assert body["status"] == 302
    assert body["referrer"] == "https://shop.example/"
    assert body["ts"] == "2026-11-02T10:00:00+00:00"


def test_event_rejects_future_and_bad_path():
    with pytest.raises(LineError, match="future_ts"):
        event_from_line(LINE, 8192, 0.0)
    star = LINE.replace("GET /go/tent-1 HTTP/1.1", "OPTIONS * HTTP/1.1")
    with pytest.raises(LineError, match="service_rejects_path"):
        event_from_line(star, 8192, time.time())


def test_replay_sorted_and_capped(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    later = LINE.replace("10:00:00", "10:05:00")
    (logs / "access.log").write_text("\n".join([later, "not a log line", LINE, LINE.replace("10:00:00", "10:09:00")]) + "\n", encoding="utf-8")
    cfg = compose_config([f"paths.log_dir={logs}", "data.mix_simulated=false"])

    replay = build_replay(cfg, 2, tmp_path)

    assert [event["ts"] for event in replay.events] == ["2026-11-02T10:00:00+00:00", "2026-11-02T10:05:00+00:00"]
    assert sum(replay.skipped.values()) == 1
    assert replay.lines_read == 3
    assert replay.path.read_text(encoding="utf-8").splitlines() == [LINE, later]
    assert [len(json.loads(body)["events"]) for body in batches(replay.events, 1)] == [1, 1]


def test_service_config_pins_candidate(tmp_path):
    cfg = compose_release_config("test", ["release.smoke.service_overrides=['serve.block_threshold=0.5']"])
    settings = ReleaseSettings.from_config(cfg)
    pinned = service_config(cfg, settings, tmp_path)
    assert pinned.mlflow.champion_alias == settings.candidate_alias
    assert pinned.serve.store.url == f"sqlite:///{(tmp_path / 'clicks.db').resolve()}"
    assert pinned.serve.block_threshold == 0.5
    assert cfg.mlflow.champion_alias == "champion"


def test_candidate_alias_not_champion():
    cfg = compose_release_config("test", ["release.candidate_alias=champion"])
    with pytest.raises(ReleaseConfigError, match="candidate_alias"):
        ReleaseSettings.from_config(cfg)


def test_release_config_forbids_prod():
    with pytest.raises(PermissionError, match="prod"):
        compose_release_config("prod")
