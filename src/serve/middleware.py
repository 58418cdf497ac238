"""ASGI middleware: request body size limit, request counts and latency per route."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from src.serve.metrics import ServiceMetrics

OTHER_ROUTE = "other"
STATUS_PAYLOAD_TOO_LARGE = 413
STATUS_SERVER_ERROR = 500


class RequestGuardMiddleware:
    """Reject bodies over `max_body_bytes` with 413, and record status and latency per route.

    A Content-Length over the limit is rejected before the body is read. A chunked body
    is counted while it is read, and the read fails with 413 once it passes the limit.
    Paths outside `routes` are counted under "other", so scanners cannot add label values.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: ServiceMetrics, routes: Collection[str]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.routes = frozenset(routes)
        # Metric children by label values, because `labels()` costs a lookup with locking per call.
        self._latency = {route: metrics.latency.labels(route=route) for route in (*self.routes, OTHER_ROUTE)}
        self._counts: dict[tuple[str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        route = scope["path"] if scope["path"] in self.routes else OTHER_ROUTE
        status = STATUS_SERVER_ERROR

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self._declared_length(scope) > self.max_body_bytes:
                await self._too_large(send_with_status)
                return
            await self.app(scope, self._limited(receive), send_with_status)
        finally:
            self._latency[route].observe(time.perf_counter() - started)
            self._count(route, status)

    def _count(self, route: str, status: int) -> None:
        counter = self._counts.get((route, status))
        if counter is None:
            counter = self.metrics.http_requests.labels(route=route, status=str(status))
            self._counts[(route, status)] = counter
        counter.inc()

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    def _limited(self, receive: Receive) -> Receive:
        received = 0
        limit = self.max_body_bytes

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(STATUS_PAYLOAD_TOO_LARGE, _too_large_detail(limit))
            return message

        return receive_within_limit

    async def _too_large(self, send: Send) -> None:
        body = f'{{"detail":"{_too_large_detail(self.max_body_bytes)}"}}'.encode()
        await send(
            {
                "type": "http.response.start",
                "status": STATUS_PAYLOAD_TOO_LARGE,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _too_large_detail(limit: int) -> str:
    return f"request body is larger than serve.max_body_bytes ({limit} bytes); send fewer or smaller events"
