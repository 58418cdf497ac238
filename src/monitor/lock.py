"""An exclusive file lock that serializes drift checks, retrains, promotions and rollbacks.

`fcntl.flock` locks belong to the open file, so the kernel releases the lock when the
holder exits or crashes. A lock file left behind by a crash therefore does not block
later runs. The locks work between processes on one host. On NFS, flock may be local to
each client.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterator

from omegaconf import DictConfig

logger = logging.getLogger(__name__)


class LockTimeoutError(TimeoutError):
    """Raised when another process holds the lock for longer than the timeout."""


@contextmanager
def exclusive_lock(path: Path, timeout_s: float, poll_s: float) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the `with` block, waiting up to `timeout_s` seconds.

    The file records the holder's process id and start time, for people who find it.
    Raises LockTimeoutError when the lock stays taken.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as handle:
        _acquire(handle, path, timeout_s, poll_s)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} since {datetime.now(timezone.utc).isoformat()}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _acquire(handle: IO[str], path: Path, timeout_s: float, poll_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    waiting_logged = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockTimeoutError(
                    f"lock {path} is still held after {timeout_s:g} s ({_holder(path)}); another drift check, "
                    "retrain, promotion or rollback is running. Try again later, or raise monitor.lock_timeout_s."
                ) from None
            if not waiting_logged:
                logger.info("waiting for lock %s (%s)", path, _holder(path))
                waiting_logged = True
            time.sleep(poll_s)


def _holder(path: Path) -> str:
    text = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    return f"held by {text}" if text else "holder unknown"


def monitor_lock(cfg: DictConfig) -> AbstractContextManager[None]:
    """Return the lock context of the monitoring commands, as configured in `monitor`."""
    return exclusive_lock(Path(str(cfg.monitor.lock_file)), float(cfg.monitor.lock_timeout_s), float(cfg.monitor.lock_poll_s))
