"""Write scored clicks to the click store from a background thread, in batches.

Requests only append records to a queue. When `queue_max` clicks are pending (queued or
being inserted), further records go to a JSON-lines spill file instead, and the writer
inserts that file after the queue. A failed insert is retried every `retry_interval_s`
seconds. On shutdown the writer inserts everything queued. If the store still fails after
`shutdown_timeout_s`, the rest goes to the spill file, which the next start inserts.
A click is lost only when the spill file cannot be written either, and that is logged
and counted in `botclick_store_lost_total`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from src.serve.click_store import ClickStore, as_utc, redact_url
from src.serve.metrics import ServiceMetrics
from src.serve.settings import StoreSettings

logger = logging.getLogger(__name__)

_TIME_COLUMNS = ("ts", "received_at")
IMPORTING_SUFFIX = ".importing"
REJECTED_SUFFIX = ".rejected"


@dataclass
class _FlushRequest:
    """Request to insert everything queued before it; `done` is set when that finished or failed."""

    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False


class SpillFile:
    """Append-only JSON-lines file of records that did not fit in the queue."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.importing = path.with_name(path.name + IMPORTING_SUFFIX)
        self.rejected = path.with_name(path.name + REJECTED_SUFFIX)
        self._lock = threading.Lock()

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append records; raises OSError when the file cannot be written."""
        lines = "".join(json.dumps(_to_json(record), ensure_ascii=False) + "\n" for record in records)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(lines)

    def take(self) -> Path | None:
        """Rename the spill file for import and return the renamed path, or None if there is nothing."""
        with self._lock:
            if not self.importing.exists() and self.path.exists():
                os.replace(self.path, self.importing)
        return self.importing if self.importing.exists() else None

    def read(self, path: Path) -> list[dict[str, Any]]:
        """Read spilled records; unreadable lines go to the `.rejected` file with the reason."""
        records = []
        with path.open(encoding="utf-8", errors="backslashreplace") as handle:
            for line_no, line in enumerate(handle, start=1):
                try:
                    records.append(_from_json(json.loads(line)))
                except (ValueError, TypeError, KeyError) as err:
                    self._reject(path, line_no, line, err)
        return records

    def _reject(self, path: Path, line_no: int, line: str, err: Exception) -> None:
        logger.error("%s line %d is not a spilled click (%s); moved it to %s", path, line_no, err, self.rejected)
        entry = {"file": str(path), "line_no": line_no, "reason": f"{type(err).__name__}: {err}", "line": line.rstrip("\n")}
        with self.rejected.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")


def _to_json(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if k in _TIME_COLUMNS else v for k, v in record.items()}


def _from_json(entry: dict[str, Any]) -> dict[str, Any]:
    record = dict(entry)
    for name in _TIME_COLUMNS:
        record[name] = as_utc(datetime.fromisoformat(entry[name]))
    return record


class ClickStoreWriter:
    """Pending scored clicks and the thread that inserts them into the store.

    Requests append to a deque, which wakes no thread. The writer wakes every
    `flush_interval_s` seconds, or once `batch_size` clicks are pending, so the request
    thread rarely has to hand the GIL to it.
    """

    def __init__(self, store: ClickStore, settings: StoreSettings, metrics: ServiceMetrics) -> None:
        self.store = store
        self._settings = settings
        self._metrics = metrics
        self._pending: deque[dict[str, Any]] = deque()
        self._flush_requests: deque[_FlushRequest] = deque()
        self._wake = threading.Event()
        self._spill = SpillFile(settings.spill_path)
        self._stopping = threading.Event()
        self._stop_deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name="click-store-writer", daemon=True)
        self.writable = False
        self.last_error: str | None = None
        # Clicks the writer thread has taken but not inserted yet; only that thread sets it.
        self._in_flight = 0

    @property
    def queue_depth(self) -> int:
        """Clicks accepted but not yet inserted or spilled."""
        return len(self._pending) + self._in_flight

    @property
    def running(self) -> bool:
        """Whether the writer thread is alive."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Check that the store takes writes, then start the thread (which first inserts any old spill)."""
        try:
            self.store.check_writable()
            self._set_writable(True, None)
        except Exception as err:  # noqa: BLE001 - the writer retries; readiness reports the failure
            self._set_writable(False, err)
            logger.error("click store %s is not writable: %s. Clicks queue until it is.", redact_url(self.store.url), err)
        self._thread.start()

    def submit(self, records: list[dict[str, Any]]) -> None:
        """Queue records without waiting; past `queue_max` pending clicks, append them to the spill file."""
        room = max(0, self._settings.queue_max - self.queue_depth)
        self._pending.extend(records if room >= len(records) else records[:room])
        if len(self._pending) >= self._settings.batch_size:
            self._wake.set()
        if len(records) > room:
            self._spill_records(records[room:])

    def flush(self, timeout_s: float) -> bool:
        """Insert everything queued so far; returns False when that failed or took over `timeout_s`."""
        request = _FlushRequest()
        self._flush_requests.append(request)
        self._wake.set()
        return request.done.wait(timeout_s) and request.ok

    def close(self) -> None:
        """Insert every queued record and stop the thread.

        Blocks while the queue drains. If the store keeps failing, the writer spills
        what is left after shutdown_timeout_s.
        """
        self._stop_deadline = time.monotonic() + self._settings.shutdown_timeout_s
        self._stopping.set()
        self._wake.set()
        self._thread.join()
        self.store.dispose()

    def _spill_records(self, records: list[dict[str, Any]]) -> None:
        try:
            self._spill.append(records)
        except OSError as err:
            self._metrics.store_lost.inc(len(records))
            logger.error("lost %d clicks: the queue is full and the spill file %s failed: %s", len(records), self._spill.path, err)
            return
        self._metrics.store_spilled.inc(len(records))
        logger.warning("writer queue full: appended %d clicks to %s", len(records), self._spill.path)

    def _run(self) -> None:
        self._import_spill()
        while True:
            self._wake.wait(self._settings.flush_interval_s)
            self._wake.clear()
            stopping = self._stopping.is_set()
            flushes = [self._flush_requests.popleft() for _ in range(len(self._flush_requests))]

            ok = self._write_pending()
            if stopping:
                ok = self._write_pending() and ok
            ok = self._import_spill() and ok
            for request in flushes:
                request.ok = ok
                request.done.set()
            if stopping:
                if not ok:
                    logger.error("spilled clicks stay in %s and %s; the next start inserts them", self._spill.path, self._spill.importing)
                return

    def _write_pending(self) -> bool:
        """Insert the pending clicks in batches of at most batch_size; returns False if one was spilled."""
        ok = True
        while self._pending:
            size = min(self._settings.batch_size, len(self._pending))
            batch = [self._pending.popleft() for _ in range(size)]
            self._in_flight = size
            ok = self._write(batch) and ok
            self._in_flight = 0
        return ok

    def _write(self, records: list[dict[str, Any]]) -> bool:
        """Insert records, retrying until it works or, after stop, until the shutdown deadline."""
        if not records:
            return True
        while True:
            try:
                self.store.insert(records)
            except Exception as err:  # noqa: BLE001 - any store failure is retried, never fatal
                self._metrics.store_write_errors.inc()
                self._set_writable(False, err)
                logger.error("inserting %d clicks failed: %s. Retrying in %.1f s.", len(records), err, self._settings.retry_interval_s)
            else:
                self._metrics.store_rows_written.inc(len(records))
                self._set_writable(True, None)
                return True

            if self._stopping.is_set() and time.monotonic() >= self._stop_deadline:
                self._spill_records(records)
                return False
            time.sleep(self._settings.retry_interval_s)

    def _import_spill(self) -> bool:
        """Insert the spill file in one transaction; returns False when it stays for later."""
        path = self._spill.take()
        if path is None:
            return True
        records = self._spill.read(path)
        try:
            self.store.insert(records)
        except Exception as err:  # noqa: BLE001 - the file stays and is retried
            self._metrics.store_write_errors.inc()
            self._set_writable(False, err)
            logger.error("inserting %d spilled clicks from %s failed: %s", len(records), path, err)
            return False
        path.unlink()
        self._metrics.store_rows_written.inc(len(records))
        logger.info("inserted %d spilled clicks from %s", len(records), path)
        return True

    def _set_writable(self, writable: bool, err: BaseException | None) -> None:
        self.writable = writable
        self.last_error = None if err is None else f"{type(err).__name__}: {err}"
