"""Tests of benchmarks/loadgen.py, the serving benchmark's load generator.

The load goes to a small real HTTP/1.1 server on 127.0.0.1 that a test thread runs. The
tests check counts and error kinds, never timings.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import import_script

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
LOOPBACK = "127.0.0.1"
TIMEOUT_S = 5.0


loadgen = import_script(BENCHMARKS / "loadgen.py", "loadgen")


@dataclass
class Behaviour:
    """Responses of the test server: their status, and whether it closes connections or chunks bodies."""

    status: int = 200
    close_every: int = 0
    chunked: bool = False
    requests: list[bytes] = field(default_factory=list)


class LoopbackServer:
    """An HTTP/1.1 server on 127.0.0.1 in its own thread and event loop."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        assert self._ready.wait(TIMEOUT_S)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(TIMEOUT_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT_S)
        self.loop.close()

    def _run(self) -> None:
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, LOOPBACK, 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()

    async def _close(self) -> None:
        self.server.close()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        behaviour = self.behaviour
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                break
            length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length"))
            behaviour.requests.append(head + await reader.readexactly(length))
            writer.write(self._response())
            await writer.drain()
            if behaviour.close_every and len(behaviour.requests) % behaviour.close_every == 0:
                break
        writer.close()

    def _response(self) -> bytes:
        body = b'{"ok":true}'
        if self.behaviour.chunked:
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n" + body + b"\r\n0\r\n\r\n"
        # Headers and body in two writes' worth of bytes, as uvicorn sends them.
        return f"HTTP/1.1 {self.behaviour.status} X\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def client(port: int, connections: int = 4) -> Any:
    """Return a load client for the test server; bodies are {"n": <request index>}."""
    return loadgen.LoadClient(LOOPBACK, port, "/v1/score", lambda i: f'{{"n":{i}}}'.encode(), TIMEOUT_S, connections)


def test_fixed_rate_sends_every_request() -> None:
    behaviour = Behaviour()
    with LoopbackServer(behaviour) as server:
        load = client(server.port)
        loadgen.run(loadgen.fixed_rate(load, rate=200, duration_s=0.5, max_requests=1000))

    assert load.stats.sent == 100
    assert len(load.stats.latencies) == 100
    assert load.stats.errors == {}
    assert len(load.stats.send_lags) == 100
    assert all(latency > 0 for latency in load.stats.latencies)
    assert all(lag >= 0 for lag in load.stats.send_lags)
    # Bodies follow the replay order, each request whole with its Content-Length.
    assert behaviour.requests[0].startswith(b"POST /v1/score HTTP/1.1\r\n")
    assert [r.rsplit(b"\r\n\r\n", 1)[1] for r in behaviour.requests[:3]] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']


def test_saturation_outlasts_request_timeout() -> None:
    """A phase longer than timeout_s must not cut off its workers (a bug once did)."""
    with LoopbackServer(Behaviour()) as server:
        load = client(server.port, connections=2)
        load.timeout_s = 0.2
        elapsed = loadgen.run(loadgen.saturation(load, duration_s=0.6, max_requests=100_000))

    assert elapsed >= 0.6
    assert load.stats.errors == {}
    assert load.stats.sent == len(load.stats.latencies) > 0
    assert load.total_ok == load.stats.sent


def test_client_counts_error_status() -> None:
    with LoopbackServer(Behaviour(status=503)) as server:
        load = client(server.port)
        loadgen.run(loadgen.fixed_rate(load, rate=100, duration_s=0.2, max_requests=1000))

    assert load.stats.errors == {"status_503": 20}
    assert load.stats.latencies == []
    assert load.total_ok == 0


def test_pool_replaces_closed_connection() -> None:
    behaviour = Behaviour(close_every=5)
    with LoopbackServer(behaviour) as server:
        load = client(server.port, connections=1)
        loadgen.run(loadgen.saturation(load, duration_s=0.3, max_requests=12))

    # One connection: requests 1-5 get a response, the 6th finds it closed, and so on.
    assert load.stats.sent == 12
    assert load.stats.errors.get("connection_closed", 0) >= 1
    assert len(load.stats.latencies) + load.stats.errors["connection_closed"] == 12
    assert len(load.stats.latencies) >= 10


def test_client_rejects_chunked_response() -> None:
    with LoopbackServer(Behaviour(chunked=True)) as server:
        load = client(server.port, connections=1)
        loadgen.run(loadgen.fixed_rate(load, rate=50, duration_s=0.1, max_requests=5))

    assert load.stats.errors.get("no_content_length", 0) >= 1
    assert load.stats.latencies == []
