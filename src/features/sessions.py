"""Group requests into client sessions.

A client is the pseudonymized IP plus the user agent. A client's next request starts a
new session when it comes more than `inactivity_gap_s` seconds after its previous one.
`assign_sessions` applies the rule to a whole table; the scoring service applies
`starts_new_session` request by request, and a test checks that both agree.
"""

from __future__ import annotations

import hashlib

import pandas as pd

CLIENT_KEY_HEX_CHARS = 16


def client_key(client_id: str, user_agent: str) -> str:
    """Return the stable key of one client: a hash of its IP pseudonym and user agent."""
    digest = hashlib.sha1(f"{client_id}\n{user_agent}".encode("utf-8", "backslashreplace"))
    return digest.hexdigest()[:CLIENT_KEY_HEX_CHARS]


def session_id(key: str, start_epoch_s: float) -> str:
    """Return a session id from the client key and the session start (whole seconds).

    Two sessions of one client are at least one inactivity gap apart, so the start
    second is unique within a client.
    """
    return f"{key}-{int(start_epoch_s)}"


def starts_new_session(previous_epoch_s: float | None, epoch_s: float, inactivity_gap_s: float) -> bool:
    """Tell whether a request at `epoch_s` opens a new session after `previous_epoch_s`."""
    return previous_epoch_s is None or epoch_s - previous_epoch_s > inactivity_gap_s


def epoch_seconds(ts: pd.Series) -> pd.Series:
    """Convert a UTC timestamp column to float seconds since the Unix epoch."""
    return (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds()


def assign_sessions(events: pd.DataFrame, inactivity_gap_s: float) -> pd.DataFrame:
    """Add `client_key` and `session_id` columns to time-sorted events.

    `events` needs `ts`, `client_id` and `user_agent`, sorted by `ts` (ties in file order).
    """
    out = events.copy()
    pairs = out[["client_id", "user_agent"]].drop_duplicates()
    keys = {
        (cid, ua): client_key(cid, ua)
        for cid, ua in zip(pairs["client_id"], pairs["user_agent"], strict=True)
    }
    out["client_key"] = [keys[(c, u)] for c, u in zip(out["client_id"], out["user_agent"], strict=True)]

    seconds = epoch_seconds(out["ts"])
    previous = seconds.groupby(out["client_key"], sort=False).shift(1)
    is_start = previous.isna() | (seconds - previous > inactivity_gap_s)

    start = seconds.where(is_start).groupby(out["client_key"], sort=False).ffill()
    out["session_id"] = [session_id(k, s) for k, s in zip(out["client_key"], start, strict=True)]
    return out
