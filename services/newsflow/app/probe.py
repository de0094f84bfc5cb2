"""What the daemon's parent measures from outside its loops, every few seconds: the metrics ``status`` also shows.

Consumer lag is the broker's log end minus the offset stored in PostgreSQL (the
offset that counts: it commits with the events), so it is one number per
partition whichever process owns the partition; reader lag is the log head
minus each reader's checkpoint. The probe also says whether PostgreSQL and the
broker answer, which ``/readyz`` reports. It keeps one connection of its own,
opened again after an outage, so it never takes one from the services' pool.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg
import structlog

from newsflow import process_state
from newsflow.adapters import metrics, postgres
from newsflow.app import outages, status
from newsflow.app.health import Health
from newsflow.settings import Settings

log = structlog.get_logger(__name__)

INTERVAL_S = 5.0
TIMEOUT_S = 5.0


@dataclass
class Reachability:
    database: bool = False
    broker: bool = False
    at: float = 0.0  # time.time() of the last probe (0: none yet)


class Probe:
    def __init__(self, settings: Settings, own: Health) -> None:
        """``own``: the daemon's health; while it is still migrating, the writer role may not exist yet."""
        self.settings = settings
        self.own = own
        self.url = settings.writer_url()
        self.last = Reachability()
        self._conn: asyncpg.Connection | None = None
        self._last_error: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await self.once()
                process_state.tick("probe")
                await outages.sleep_unless_stopped(stop, INTERVAL_S)
        finally:
            process_state.loop_ended("probe")
            await self._close()

    async def once(self) -> Reachability:
        ends = await status.kafka_log_ends(self.settings)
        stored = await self._database()
        if stored is not None and ends is not None:
            for partition, end in ends.items():
                row = stored.get(partition)
                metrics.CONSUMER_LAG.labels(str(partition)).set(max(0, end - (row["next_offset"] if row else 0)))
        metrics.BROKER_UP.set(ends is not None)
        metrics.POSTGRES_UP.set(stored is not None)
        self.last = Reachability(database=stored is not None, broker=ends is not None, at=time.time())
        metrics.PROBE_SECONDS.set(self.last.at)
        return self.last

    async def _database(self) -> dict[int, asyncpg.Record] | None:
        """Read positions, head and live stories into their gauges; the stored offsets (None: unreachable)."""
        s = self.settings
        try:
            conn = await self._connection()
            async with asyncio.timeout(TIMEOUT_S):
                head = await postgres.head_position(conn)
                readers = await conn.fetch("SELECT name, position FROM newsflow.checkpoints")
                stories = await conn.fetchval("SELECT count(*) FROM projection.stories")
                stored = await postgres.load_offsets(conn, s.consumer_group, s.raw_topic)
        except Exception as exc:  # noqa: BLE001  (the probe reports; the services stop on what they cannot ride out)
            # Another error (a wrong password, the writer role before the first migration) is logged when it
            # first appears after the start: the services meet it too, and stop the daemon if it persists.
            migrating = "startup" in self.own.services
            if not (postgres.is_unavailable(exc) or migrating) and type(exc).__name__ != self._last_error:
                log.warning("probe.database_error", error=type(exc).__name__)
            self._last_error = None if migrating else type(exc).__name__
            await self._close()
            return None
        self._last_error = None
        metrics.LOG_HEAD.set(head)
        for r in readers:
            metrics.READER_POSITION.labels(r["name"]).set(r["position"])
            metrics.READER_LAG.labels(r["name"]).set(max(0, head - r["position"]))
        metrics.STORIES.set(stories)
        return stored

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncio.wait_for(postgres.connect(self.url), TIMEOUT_S)
        return self._conn

    async def _close(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None
