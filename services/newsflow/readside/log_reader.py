"""Follow the event log in position order, applying each page with its checkpoint in one transaction.

Readers never skip an event: appends commit in position order (see
``adapters.postgres``), pages are read with ``position > checkpoint`` and the
checkpoint is set to the last event actually applied. The checkpoint row is
locked for the transaction, so two instances of the same reader cannot apply
the same page twice.

A reader with a ``horizon`` reads no further than the position it returns (the
story feed stays behind the projection it reads); such a reader wakes when
another reader commits a page (``CHECKPOINT_CHANNEL``) rather than on appends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import structlog

from newsflow import process_state
from newsflow.adapters import postgres
from newsflow.domain.events import RecordedEvent, registry

log = structlog.get_logger(__name__)

Handler = Callable[[asyncpg.Connection, Sequence[RecordedEvent]], Awaitable[None]]
Horizon = Callable[[asyncpg.Connection], Awaitable[int]]


class LogReader:
    def __init__(
        self,
        name: str,
        pool: asyncpg.Pool,
        handler: Handler,
        *,
        page_size: int = 500,
        poll_interval_s: float = 0.5,
        horizon: Horizon | None = None,
        committed: Callable[[], None] | None = None,
    ) -> None:
        """``committed`` is called after each page's transaction commits (what the handler appended is in the log)."""
        self.name = name
        self.committed = committed
        self.pool = pool
        self.handler = handler
        self.page_size = page_size
        self.poll_interval_s = poll_interval_s
        self.horizon = horizon
        self.channel = postgres.CHECKPOINT_CHANNEL if horizon else postgres.NOTIFY_CHANNEL
        self._wake = asyncio.Event()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def step(self) -> int:
        """Apply at most one page; returns how many events were applied."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO newsflow.checkpoints (name, position) VALUES ($1, 0) ON CONFLICT DO NOTHING", self.name
            )
            position = await conn.fetchval(
                "SELECT position FROM newsflow.checkpoints WHERE name = $1 FOR UPDATE", self.name
            )
            until = await self.horizon(conn) if self.horizon else None
            events = await postgres.read_after(conn, position, self.page_size, until)
            if not events:
                return 0
            await self.handler(conn, [registry.upcast(e) for e in events])
            await postgres.save_checkpoint(conn, self.name, events[-1].position)
            await conn.execute("SELECT pg_notify($1, $2)", postgres.CHECKPOINT_CHANNEL, self.name)
        if self.committed is not None:
            self.committed()
        return len(events)

    async def catch_up(self) -> int:
        total = 0
        while n := await self.step():
            total += n
        return total

    async def run(self, stop: asyncio.Event) -> None:
        listener = await self.pool.acquire()
        await listener.add_listener(self.channel, self._on_notify)
        log.info("log_reader.started", reader=self.name)
        try:
            while not stop.is_set():
                process_state.tick(self.name)
                self._wake.clear()
                applied = await self.catch_up()
                if applied:
                    log.info("log_reader.applied", reader=self.name, events=applied)
                stop_wait = asyncio.ensure_future(stop.wait())
                wake_wait = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    {stop_wait, wake_wait}, timeout=self.poll_interval_s, return_when=asyncio.FIRST_COMPLETED
                )
                stop_wait.cancel()
                wake_wait.cancel()
        finally:
            process_state.loop_ended(self.name)
            await self._let_go(listener)
            log.info("log_reader.stopped", reader=self.name)

    async def _let_go(self, listener: asyncpg.Connection) -> None:
        """Hand the listening connection back; after an outage it is broken, and is dropped instead."""
        try:
            await listener.remove_listener(self.channel, self._on_notify)
            await self.pool.release(listener)
        except Exception as exc:
            if not postgres.is_unavailable(exc):
                raise
            listener.terminate()
