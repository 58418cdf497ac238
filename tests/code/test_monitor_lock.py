"""The monitor lock: two processes never hold it at once, and a waiter times out."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from src.monitor.lock import LockTimeoutError, exclusive_lock

HOLD_S = 1.0
POLL_S = 0.05


def hold_lock(path: str, timeout_s: float, log: str) -> None:
    """Take the lock, record the start and end times, and hold it for HOLD_S seconds."""
    with exclusive_lock(Path(path), timeout_s, POLL_S):
        started = time.time()
        time.sleep(HOLD_S)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{started} {time.time()}\n")


def test_lock_serializes_processes(tmp_path: Path):
    lock, log = tmp_path / "drift.lock", tmp_path / "intervals.txt"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=hold_lock, args=(str(lock), 30.0, str(log))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    intervals = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
    assert len(intervals) == 2
    assert intervals[1][0] >= intervals[0][1]


def test_lock_timeout_names_holder(tmp_path: Path):
    lock = tmp_path / "drift.lock"
    with exclusive_lock(lock, 1.0, POLL_S):
        context = multiprocessing.get_context("spawn")
        waiter = context.Process(target=hold_lock, args=(str(lock), 0.3, str(tmp_path / "never.txt")))
        waiter.start()
        waiter.join(timeout=30)
    assert waiter.exitcode != 0
    assert not (tmp_path / "never.txt").exists()

    with exclusive_lock(lock, 1.0, POLL_S):
        with pytest.raises(LockTimeoutError, match="held by pid"):
            with exclusive_lock(lock, 0.2, POLL_S):
                pass


def test_lock_released_after_block(tmp_path: Path):
    lock = tmp_path / "nested" / "drift.lock"
    with exclusive_lock(lock, 1.0, POLL_S):
        assert lock.read_text().startswith("pid ")
    with exclusive_lock(lock, 0.1, POLL_S):
        pass
