"""Tests for the session rule: the inactivity gap, and batch versus request-by-request sessions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from src.config import compose_config
from src.data.preprocess import preprocess
from src.data.schema import RAW_EVENT_SCHEMA
from src.features.sessions import assign_sessions, client_key, epoch_seconds, session_id, starts_new_session

T0 = datetime(2026, 11, 2, 10, 0, 0, tzinfo=timezone.utc)
GAP_S = 1800
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
LOG_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "access_logs"


def requests_at(seconds: list[float], client_id: str = "c1", user_agent: str = UA) -> pd.DataFrame:
    """Return a time-sorted frame of one client's requests at the given offsets from T0."""
    return pd.DataFrame({
        "ts": pd.to_datetime([T0 + timedelta(seconds=s) for s in seconds], utc=True),
        "client_id": client_id,
        "user_agent": user_agent,
    })


def replay_sessions(events: pd.DataFrame, inactivity_gap_s: float) -> list[str]:
    """Assign session ids one request at a time with `starts_new_session`, as the service does."""
    previous: dict[str, float] = {}
    start: dict[str, float] = {}
    ids = []
    for cid, ua, second in zip(events["client_id"], events["user_agent"], epoch_seconds(events["ts"]), strict=True):
        key = client_key(cid, ua)
        if starts_new_session(previous.get(key), second, inactivity_gap_s):
            start[key] = second
        previous[key] = second
        ids.append(session_id(key, start[key]))
    return ids


def test_gap_exactly_keeps_one_session() -> None:
    sessions = assign_sessions(requests_at([0, GAP_S]), GAP_S)

    assert sessions["session_id"].nunique() == 1


def test_gap_plus_one_second_splits() -> None:
    sessions = assign_sessions(requests_at([0, GAP_S + 1]), GAP_S)
    first, second = sessions["session_id"].tolist()

    assert first != second
    assert second.endswith(f"-{int(T0.timestamp()) + GAP_S + 1}")


def test_starts_new_session_at_boundary() -> None:
    assert starts_new_session(None, 0.0, GAP_S) is True
    assert starts_new_session(100.0, 100.0 + GAP_S, GAP_S) is False
    assert starts_new_session(100.0, 101.0 + GAP_S, GAP_S) is True


def test_chain_of_short_gaps_stays_one_session() -> None:
    # Each gap is within the limit, although the whole session is longer than one gap.
    sessions = assign_sessions(requests_at([0, 1000, 2000, 3000, 4800]), GAP_S)

    assert sessions["session_id"].nunique() == 1


def test_user_agent_separates_clients_of_one_ip() -> None:
    both = pd.concat([requests_at([0, 10]), requests_at([5], user_agent="curl/8.5.0")])
    sessions = assign_sessions(both.sort_values("ts", kind="stable"), GAP_S)

    assert sessions["client_key"].nunique() == 2
    assert sessions["session_id"].nunique() == 2


def test_preprocess_splits_at_configured_gap(tmp_path: Path) -> None:
    gap = 60
    base = {
        "client_id": "c1", "prefix_id": "p1", "method": "GET", "path": "/", "protocol": "HTTP/1.1",
        "status": 200, "bytes": 1, "referrer": "", "user_agent": UA, "source": "access.log",
        "source_format": "combined",
    }
    # Offsets 0 → 60 (exactly the gap) → 121 (gap + 1) → 181 (exactly the gap again).
    rows = [{**base, "ts": T0 + timedelta(seconds=s), "line_no": i + 1} for i, s in enumerate([0, 60, 121, 181])]
    pq.write_table(pa.Table.from_pylist(rows, schema=RAW_EVENT_SCHEMA), tmp_path / "raw.parquet")

    preprocess(
        tmp_path / "raw.parquet", tmp_path / "events.parquet", tmp_path / "report.json",
        compose_config([f"data.preprocess.inactivity_gap_s={gap}"]),
    )
    ids = pd.read_parquet(tmp_path / "events.parquet")["session_id"].tolist()

    assert ids[0] == ids[1]
    assert ids[1] != ids[2]
    assert ids[2] == ids[3]


@pytest.mark.real_logs
def test_batch_sessions_match_replay_on_real_logs(tmp_path: Path) -> None:
    collect = pytest.importorskip("src.data.collect", reason="src.data.collect is not available").collect
    if not LOG_DIR.is_dir():
        pytest.skip(f"real access logs not found at {LOG_DIR}")
    cfg = compose_config(["data.mix_simulated=false"])
    raw, events_path = tmp_path / "clicks.parquet", tmp_path / "events.parquet"
    collect(LOG_DIR, raw, tmp_path / "quarantine.jsonl", tmp_path / "collect.json", cfg)

    preprocess(raw, events_path, tmp_path / "preprocess.json", cfg)
    events = pd.read_parquet(events_path)
    replayed = pd.Series(replay_sessions(events, float(cfg.data.preprocess.inactivity_gap_s)), index=events.index)
    mismatches = events.loc[events["session_id"] != replayed, ["source", "line_no", "session_id"]]

    assert len(events) > 0
    assert events["ts"].is_monotonic_increasing
    assert mismatches.empty, mismatches.head().to_string()
    assert 0 < events["session_id"].nunique() < len(events)
