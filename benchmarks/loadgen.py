"""A lean HTTP/1.1 load generator for the serving benchmark.

The load runs on the same 2-core machine as the server it measures, so every microsecond
of client CPU is taken from the server. An httpx client spent about 1 ms of CPU per
request. This client spends far less: it runs on uvloop, keeps one keep-alive connection
per request in flight, writes prebuilt request bytes, and reads only the status line,
Content-Length and the body length of each response.

It reads only the kind of response the two benchmarked servers send: HTTP/1.1 with a
Content-Length. Any other response (a chunked body, or a closed connection) is counted
as an error by name, never misread.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import uvloop

HEADER_END = b"\r\n\r\n"
CONTENT_LENGTH = b"content-length:"
STATUS_OK = 200
# "HTTP/1.1 200 OK": the status code sits at bytes 9 to 12 of the status line.
STATUS_SLICE = slice(9, 12)


class ResponseError(Exception):
    """A response this client cannot read, named by its kind (for the error counts)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Connection(asyncio.Protocol):
    """One keep-alive connection that carries one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self._status = 0
        self._expected = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport has the methods of asyncio.Transport but is not a subclass.
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail("connection_closed")

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._expected < 0 and not self._read_head():
            return
        if len(self._buffer) >= self._expected:
            del self._buffer[: self._expected]
            self._expected = -1
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(self._status)

    def _read_head(self) -> bool:
        """Parse the status line and Content-Length once the headers are in; False until then."""
        end = self._buffer.find(HEADER_END)
        if end < 0:
            return False
        head = bytes(self._buffer[:end]).lower()
        length = next((line[len(CONTENT_LENGTH) :] for line in head.split(b"\r\n") if line.startswith(CONTENT_LENGTH)), None)
        if length is None:
            self._fail("no_content_length")
            return False
        self._status = int(head[STATUS_SLICE])
        self._expected = end + len(HEADER_END) + int(length)
        return True

    def _fail(self, kind: str) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ResponseError(kind))
        if self.transport is not None:
            self.transport.close()

    async def request(self, payload: bytes) -> int:
        """Send one whole request and return the response's status code."""
        if self.transport is None or self.transport.is_closing():
            raise ResponseError("connection_closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return await self._waiter


def request_bytes(host: str, port: int, route: str, body: bytes) -> bytes:
    """Return a whole POST request with a JSON body."""
    head = (
        f"POST {route} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class LoadStats:
    """Outcomes of the requests sent since the last `reset`."""

    latencies: list[float] = field(default_factory=list)
    # Seconds from each request's scheduled time to the moment it was written (client lag).
    send_lags: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    sent: int = 0

    def error(self, kind: str, count: int = 1) -> None:
        """Count `count` errors of one kind."""
        self.errors[kind] = self.errors.get(kind, 0) + count


class LoadClient:
    """POST load from a pool of connections, recording latency from each request's scheduled time."""

    def __init__(self, host: str, port: int, route: str, body: Callable[[int], bytes], timeout_s: float, connections: int) -> None:
        self.host, self.port, self.route, self.body = host, port, route, body
        self.timeout_s, self.connections = timeout_s, connections
        self.next_index = 0
        self.stats = LoadStats()
        # 200 responses since start, warm-up included, to compare with the stored clicks.
        self.total_ok = 0
        # First in, first out, so every connection is used often and no server closes one as idle.
        self._idle: deque[Connection] = deque()

    def reset(self) -> None:
        """Start new phase counts; `total_ok` and the request index go on."""
        self.stats = LoadStats()

    def next_request(self) -> bytes:
        """Return the bytes of the next request in replay order."""
        payload = request_bytes(self.host, self.port, self.route, self.body(self.next_index))
        self.next_index += 1
        return payload

    async def open(self) -> None:
        """Open the pool's connections."""
        loop = asyncio.get_running_loop()
        for _ in range(self.connections):
            _, protocol = await loop.create_connection(Connection, self.host, self.port)
            self._idle.append(protocol)

    def close(self) -> None:
        """Close the idle connections; busy ones close with their event loop."""
        for connection in self._idle:
            if connection.transport is not None:
                connection.transport.close()
        self._idle.clear()

    def acquire(self) -> Connection:
        """Take the connection idle longest; `send` gives it back. Check `idle` first."""
        return self._idle.popleft()

    async def send(self, connection: Connection, payload: bytes, scheduled: float) -> None:
        """Send on a connection from `acquire`, give the connection back and record the outcome.

        Latency counts from `scheduled`, or from now if the event loop's timer (1 ms
        resolution) woke the caller before its scheduled time.
        """
        self.stats.sent += 1
        now = time.perf_counter()
        self.stats.send_lags.append(max(0.0, now - scheduled))
        scheduled = min(scheduled, now)
        try:
            status = await connection.request(payload)
        except ResponseError as err:
            self.stats.error(err.kind)
            await self._replace(connection)
            return
        self._idle.append(connection)
        if status != STATUS_OK:
            self.stats.error(f"status_{status}")
            return
        self.stats.latencies.append(time.perf_counter() - scheduled)
        self.total_ok += 1

    async def _replace(self, connection: Connection) -> None:
        if connection.transport is not None:
            connection.transport.close()
        try:
            _, fresh = await asyncio.get_running_loop().create_connection(Connection, self.host, self.port)
        except OSError as err:
            self.stats.error(type(err).__name__)
            return
        self._idle.append(fresh)

    @property
    def idle(self) -> int:
        """Connections free for a request."""
        return len(self._idle)


async def fixed_rate(load: LoadClient, rate: float, duration_s: float, max_requests: int) -> float:
    """Send at `rate` per second on a fixed schedule for `duration_s`; returns the elapsed seconds.

    Each request's latency counts from its scheduled time, so one that waits for a free
    connection counts the wait against the server. Requests whose turn comes after
    `duration_s` are not sent and count as `not_sent_in_time` errors. Requests still
    unanswered `timeout_s` after the last send count as `timeout`.
    """
    total = min(max_requests, int(rate * duration_s))
    pending: set[asyncio.Task[None]] = set()
    await load.open()
    start = time.perf_counter()
    for n in range(total):
        scheduled = start + n / rate
        payload = load.next_request()
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        while load.idle == 0 and pending:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if time.perf_counter() > start + duration_s or load.idle == 0:
            load.stats.error("not_sent_in_time", total - n)
            break
        task = asyncio.create_task(load.send(load.acquire(), payload, scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    return await _finish(load, pending, start, load.timeout_s)


async def saturation(load: LoadClient, duration_s: float, max_requests: int) -> float:
    """Keep every connection busy back to back for `duration_s`; returns the elapsed seconds."""
    await load.open()
    budget = {"left": max_requests}
    start = time.perf_counter()
    deadline = start + duration_s

    async def worker() -> None:
        while time.perf_counter() < deadline and budget["left"] > 0 and load.idle > 0:
            budget["left"] -= 1
            payload = load.next_request()
            await load.send(load.acquire(), payload, time.perf_counter())

    workers = {asyncio.create_task(worker()) for _ in range(load.connections)}
    return await _finish(load, workers, start, duration_s + load.timeout_s)


async def _finish(load: LoadClient, pending: set[asyncio.Task[None]], start: float, wait_s: float) -> float:
    """Wait up to `wait_s` for pending work, count what is left as timeouts, close the pool."""
    if pending:
        _, late = await asyncio.wait(pending, timeout=wait_s)
        for task in late:
            task.cancel()
        if late:
            load.stats.error("timeout", len(late))
    elapsed = time.perf_counter() - start
    load.close()
    return elapsed


def run(phase: Coroutine[Any, Any, float]) -> float:
    """Run one phase on a fresh uvloop event loop and return its elapsed seconds."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(phase)
