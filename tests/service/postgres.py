"""A throwaway PostgreSQL server on 127.0.0.1 for the click store tests.

The server gets its own data folder under /tmp and a free port, and is stopped and
deleted after the tests. Its programs (initdb, pg_ctl) come from Debian's postgresql
package, which .ci/run installs. PostgreSQL refuses to run as root, so as root the
programs run as the `postgres` user that the package creates.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.service.server import LOOPBACK, free_port

# Debian installs each major version's programs here; the newest wins.
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_USER = "postgres"
DATABASE = "botclick_test"
ROLE = "botclick"
COMMAND_TIMEOUT_S = 120


class PostgresUnavailable(Exception):
    """PostgreSQL cannot run here; the message names what is missing."""


PROGRAMS = ("initdb", "pg_ctl", "createdb")


def find_bindir() -> Path:
    """Return the folder with initdb, pg_ctl and createdb; raises PostgresUnavailable when there is none.

    Debian's version folders come first, newest first, then the folder that initdb on PATH links to.
    """
    debian = sorted(Path("/").glob(DEBIAN_BIN_GLOB.lstrip("/")), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    on_path = shutil.which("initdb")
    candidates = [*reversed(debian), *([Path(on_path).resolve().parent] if on_path else [])]
    for bindir in candidates:
        if all((bindir / program).is_file() for program in PROGRAMS):
            return bindir
    raise PostgresUnavailable(f"no folder with the PostgreSQL programs {list(PROGRAMS)}; install Debian's postgresql package")


def run_as_server_user(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program, as the postgres user when this process is root."""
    if os.geteuid() == 0:
        command = ["runuser", "-u", SERVER_USER, "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=True)


@dataclass
class PostgresServer:
    """One PostgreSQL cluster: its folder, port and programs."""

    bindir: Path
    folder: Path
    port: int

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the test database (trust authentication on 127.0.0.1 only)."""
        return f"postgresql+psycopg://{ROLE}@{LOOPBACK}:{self.port}/{DATABASE}"

    @classmethod
    def start(cls) -> PostgresServer:
        """Create a cluster in a new folder under /tmp, start it and create the test database."""
        bindir = find_bindir()
        folder = Path(tempfile.mkdtemp(prefix="botclick-postgres-"))
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam(SERVER_USER)
            except KeyError as err:
                shutil.rmtree(folder)
                raise PostgresUnavailable(f"running as root and there is no '{SERVER_USER}' user to run PostgreSQL") from err
            os.chown(folder, user.pw_uid, user.pw_gid)
        server = cls(bindir, folder, free_port())
        try:
            server._init_and_start()
        except BaseException:
            server.stop()
            raise
        return server

    def _init_and_start(self) -> None:
        data = self.folder / "data"
        run_as_server_user([str(self.bindir / "initdb"), "-D", str(data), "-U", ROLE, "--auth=trust", "-E", "UTF8", "--no-sync"])
        # Listen on 127.0.0.1 only, with the Unix socket in the cluster's own folder.
        options = f"-h {LOOPBACK} -p {self.port} -k {self.folder} -F"
        run_as_server_user([str(self.bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.folder / "server.log"), "-w", "start"])
        run_as_server_user([str(self.bindir / "createdb"), "-h", LOOPBACK, "-p", str(self.port), "-U", ROLE, DATABASE])

    def stop(self) -> None:
        """Stop the server, if it runs, and delete its folder."""
        data = self.folder / "data"
        try:
            if (data / "postmaster.pid").exists():
                run_as_server_user([str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
