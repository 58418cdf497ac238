"""Collect reads click-store exports: rows with pseudonyms in place of the client IP."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from src.config import compose_config
from src.data.collect import collect

STORED = {
    "ts": "2019-10-14T08:50:18Z", "client_id": "23b0c37603f5d881", "prefix_id": "939b15d123b5459c",
    "method": "GET", "path": "/go/shop/1", "protocol": "HTTP/1.1", "status": 302, "bytes": 0,
    "referrer": "", "user_agent": "Mozilla/5.0", "session_id": "abc-1", "bot_probability": 0.9,
    "decision": "flag", "model_version": "2", "received_at": "2026-12-04T22:07:40Z", "store_id": 1,
}


def run_collect(tmp_path: Path, rows: list[dict]) -> tuple[dict, pd.DataFrame, list[dict]]:
    logs = tmp_path / "clicks"
    logs.mkdir()
    (logs / "clicks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    report = collect(logs, out / "raw.parquet", out / "q.jsonl", out / "c.json", compose_config(["data.mix_simulated=false"]))
    quarantine = [json.loads(line) for line in (out / "q.jsonl").read_text().splitlines()]
    return report, pd.read_parquet(out / "raw.parquet"), quarantine


def test_stored_click_keeps_pseudonyms(tmp_path):
    report, events, _ = run_collect(tmp_path, [STORED])
    assert report["totals"]["parsed"] == 1
    assert events.loc[0, "client_id"] == STORED["client_id"]
    assert events.loc[0, "prefix_id"] == STORED["prefix_id"]
    assert events.loc[0, "path"] == "/go/shop/1"


def test_stored_click_with_raw_ip_quarantined(tmp_path):
    report, events, quarantine = run_collect(tmp_path, [{**STORED, "client_ip": "198.51.100.1"}])
    assert report["totals"]["quarantined"] == 1
    assert len(events) == 0
    assert quarantine[0]["reason"] == "unknown_field"
    assert "198.51.100.1" not in json.dumps(quarantine)
