"""A throwaway PostgreSQL cluster for tests and the benchmark: initdb into a temp dir, started on a
free loopback port with trust authentication, stopped and deleted afterwards.

PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` OS user (which
Debian's package creates), its folder owned by that user.
"""

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.support.processes import free_port

MISSING = ("PostgreSQL server binaries (initdb, pg_ctl) are not installed: .ci/run installs them "
           "(apt-get update && apt-get install -y postgresql); run it, or install that package yourself.")


def postgres_bin() -> Path:
    """The folder holding initdb and pg_ctl (Debian keeps them out of PATH); RuntimeError if absent."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    on_path = shutil.which("pg_ctl")
    found = candidates[0] if candidates else on_path
    if found is None or not Path(found).with_name("initdb").exists():
        raise RuntimeError(MISSING)
    return Path(found).parent


class PostgresCluster:
    """fsync is off unless asked for: tests kill servers, never the machine, and a cluster that
    syncs nothing starts and commits faster. The benchmark asks for it, to measure a real setup."""

    def __init__(self, fsync: bool = False):
        self.bin = postgres_bin()
        self.port = free_port()
        self.fsync = fsync
        self.dir = Path(tempfile.mkdtemp(prefix="durabletask-pg-"))
        self._as_postgres = os.geteuid() == 0

    def _run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        result = subprocess.run([*prefix, *cmd], capture_output=True, text=True, cwd=self.dir)
        if result.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {result.stderr.strip() or result.stdout.strip()}")

    def start(self) -> "PostgresCluster":
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        self._start_server()
        return self

    def _start_server(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=300 "
                   f"-c fsync={'on' if self.fsync else 'off'}")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-o", options, "-l",
                  str(self.dir / "server.log"), "-w", "-t", "30", "start")

    def _stop_server(self) -> None:
        """An immediate shutdown: every connection is cut and the next start recovers from the WAL, as after a crash."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")

    def restart(self, down_seconds: float = 0.0) -> None:
        """Crash the server and bring it back on the same port after `down_seconds`."""
        self._stop_server()
        time.sleep(down_seconds)
        self._start_server()

    def stop(self) -> None:
        try:
            self._stop_server()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database; returns its store URL."""
        import psycopg
        name = f"hub_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)
