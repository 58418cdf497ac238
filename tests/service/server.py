"""Start the real scoring service (`botclick serve`) or an MLflow tracking server as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import httpx

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0
ADMIN_TOKEN = "test-admin-token"
PSEUDONYM_KEY = "service-test-pseudonym-key"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def child_env(tracking_uri: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment of a child process: telemetry off, the given tracking URI and key."""
    env = dict(os.environ)
    env.update(
        MLFLOW_TRACKING_URI=tracking_uri,
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        BOTCLICK_PSEUDONYM_KEY=PSEUDONYM_KEY,
    )
    env.pop("BOTCLICK_ADMIN_TOKEN", None)
    env.pop("BOTCLICK_CLICK_STORE_URL", None)
    env.update(extra or {})
    return env


@dataclass
class ServiceProcess:
    """A `botclick serve` subprocess on 127.0.0.1 with its log file."""

    workdir: Path
    params: Path
    env: dict[str, str]
    overrides: Sequence[str] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the service."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        """File that receives the service's stdout and stderr."""
        return self.workdir / f"service-{self.port}.log"

    def start(self) -> ServiceProcess:
        """Start the service and wait until /healthz returns 200; raises with the log on failure."""
        command = [
            sys.executable, "-m", "src.serve", "serve", "--params", str(self.params),
            "--port", str(self.port), *self.overrides,
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(f"{self.url}/healthz", self.process, self.log_path)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig` and wait for the process to exit; returns its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(f"service did not stop within {STOP_TIMEOUT_S} s; log:\n{self.log()}") from None

    def assert_clean_exit(self, exit_code: int) -> None:
        """Check that the service ran its shutdown to the end.

        uvicorn 0.55 re-raises the signal it caught after a graceful shutdown, so SIGTERM
        gives exit code -15.
        """
        assert exit_code in (0, -signal.SIGTERM), self.log()
        assert "Application shutdown complete" in self.log()

    def log(self) -> str:
        """Return the service log so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def metric(self, name: str, labels: str = "") -> float:
        """Return one sample of /metrics, e.g. metric("botclick_clicks_scored_total", 'decision="flag"')."""
        key = f"{name}{{{labels}}}" if labels else name
        for line in httpx.get(f"{self.url}/metrics").text.splitlines():
            if line.startswith(key + " "):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(f"metric {key} not found on {self.url}/metrics")

    def flush(self) -> dict[str, Any]:
        """Call POST /admin/flush and return its body."""
        response = httpx.post(f"{self.url}/admin/flush", headers=admin_headers(), timeout=STOP_TIMEOUT_S)
        assert response.status_code == 200, response.text
        return response.json()


def admin_headers() -> dict[str, str]:
    """Authorization header with the test admin token."""
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def wait_for(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float = START_TIMEOUT_S) -> None:
    """Poll `url` until it returns 200; fail with the log when the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}; log:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError(f"{url} did not answer within {timeout_s} s; log:\n{log_path.read_text(errors='replace')}")


@dataclass
class TrackingServer:
    """An `mlflow server` subprocess on 127.0.0.1 over a SQLite store, without its job runner."""

    workdir: Path
    backend_uri: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Tracking URI of the server."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> TrackingServer:
        """Start the server and wait for /health."""
        env = child_env(self.backend_uri, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        command = [
            str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", self.backend_uri,
            "--host", LOOPBACK, "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        log_path = self.workdir / f"mlflow-server-{self.port}.log"
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(f"{self.url}/health", self.process, log_path)
        return self

    def stop(self) -> None:
        """Stop the server and everything it started (its process group)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def count_rows(db_path: Path, table: str = "clicks") -> int:
    """Return the number of rows in a SQLite click store."""
    with sqlite3.connect(db_path) as connection:
        return int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def stored_rows(db_path: Path, columns: str, table: str = "clicks") -> list[tuple[Any, ...]]:
    """Return the given columns of every stored click, in id order."""
    with sqlite3.connect(db_path) as connection:
        return connection.execute(f"SELECT {columns} FROM {table} ORDER BY id").fetchall()


def click_json(index: int, ts: str = "2026-11-02T10:00:00Z", **fields: Any) -> dict[str, Any]:
    """Return a valid click event whose path names `index`, so a stored row can be matched to its request."""
    event: dict[str, Any] = {
        "ts": ts,
        "client_ip": f"198.51.100.{index % 250 + 1}",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "method": "GET",
        "path": f"/go/item-{index}",
        "referrer": "https://example.org/",
        "protocol": "HTTP/1.1",
    }
    event.update(fields)
    return event


def dumps(payload: Any) -> str:
    """Serialize a payload as compact JSON."""
    return json.dumps(payload, separators=(",", ":"))
