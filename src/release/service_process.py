"""Start the scoring service as a subprocess that serves one pinned model version, and stop it.

The version is pinned without any service feature: the service's params file sets
`mlflow.champion_alias` to the release's candidate alias, so it loads and keeps that
version. Its click store and spill file go to the release workdir.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from omegaconf import DictConfig, OmegaConf

from src.config import ENV_VARIABLE, write_params
from src.release.settings import ReleaseSettings, SmokeSettings

logger = logging.getLogger(__name__)

# Seconds between two readiness probes.
READY_POLL_S = 0.25
# Files of the previous smoke test that each run removes first, so the store holds one run.
RUN_FILES = ("clicks.db", "clicks.db-wal", "clicks.db-shm", "spill.jsonl", "service.log", "service-params.yaml")


class SmokeTestError(RuntimeError):
    """A failed smoke test; the message names the check and the reason."""


@dataclass
class RunningService:
    """A started service: its base URL, process and log file."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int) -> str:
        """Return the last `lines` lines of the service's log."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])


def free_port(host: str) -> int:
    """Return a TCP port that was free on `host` a moment ago."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def service_config(cfg: DictConfig, settings: ReleaseSettings, folder: Path) -> DictConfig:
    """Return the service's config: the candidate alias as champion, a private click store, then the overrides."""
    store = folder / "clicks.db"
    pinned = OmegaConf.merge(
        cfg,
        {
            "mlflow": {"champion_alias": settings.candidate_alias},
            "serve": {"store": {"url": f"sqlite:///{store.resolve()}", "spill_path": str((folder / "spill.jsonl").resolve())}},
        },
        OmegaConf.from_dotlist(list(settings.smoke.service_overrides)),
    )
    assert isinstance(pinned, DictConfig)
    return pinned


@contextmanager
def running_service(cfg: DictConfig, settings: ReleaseSettings, folder: Path) -> Iterator[RunningService]:
    """Start `botclick serve` with the candidate pinned, wait until it serves that version, and stop it on exit."""
    smoke = settings.smoke
    folder.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    params = write_params(service_config(cfg, settings, folder), folder / "service-params.yaml")
    port = smoke.port or free_port(smoke.host)
    command = [sys.executable, "-m", "src.serve", "serve", "--params", str(params), "--host", smoke.host, "--port", str(port)]
    env = {key: value for key, value in os.environ.items() if key != ENV_VARIABLE}
    log_path = folder / "service.log"
    with log_path.open("wb") as log:
        logger.info("starting the scoring service on %s:%d: %s", smoke.host, port, " ".join(command))
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    service = RunningService(f"http://{smoke.host}:{port}", process, log_path)
    try:
        yield service
    finally:
        stop(service, smoke.shutdown_timeout_s)


def wait_until_serving(service: RunningService, version: str, smoke: SmokeSettings) -> float:
    """Poll /readyz until the service is ready with `version`; return the seconds it took.

    Raises SmokeTestError when the process exits, serves another version, or the wait times out.
    """
    started = time.monotonic()
    last = "no answer yet"
    with httpx.Client(timeout=smoke.ready_probe_timeout_s) as client:
        while time.monotonic() - started < smoke.startup_timeout_s:
            if service.process.poll() is not None:
                raise SmokeTestError(
                    f"the scoring service exited with code {service.process.returncode} before it was ready; "
                    f"its log ends with:\n{service.log_tail(smoke.log_tail_lines)}"
                )
            try:
                response = client.get(f"{service.base_url}/readyz")
                body = response.json()
            except (httpx.TransportError, ValueError) as err:
                last = f"{type(err).__name__}: {err}"
            else:
                last = f"HTTP {response.status_code}: {body}"
                if response.status_code == 200 and str(body.get("model_version")) == version:
                    return time.monotonic() - started
                if response.status_code == 200:
                    raise SmokeTestError(f"the service is ready with model version {body.get('model_version')}, not the candidate {version}")
            time.sleep(READY_POLL_S)
    raise SmokeTestError(
        f"the scoring service was not ready with version {version} after {smoke.startup_timeout_s:g} s "
        f"(release.smoke.startup_timeout_s); last /readyz: {last}; its log ends with:\n{service.log_tail(smoke.log_tail_lines)}"
    )


def stop(service: RunningService, timeout_s: float) -> None:
    """Send SIGTERM, wait up to `timeout_s` seconds, then kill the process if it still runs."""
    process = service.process
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        logger.warning("the scoring service (pid %d) did not stop within %g s of SIGTERM; killing it", process.pid, timeout_s)
        process.kill()
        process.wait(timeout=timeout_s)
    logger.info("scoring service stopped with code %s", process.returncode)
