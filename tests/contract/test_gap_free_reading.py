"""Readers never skip an event, even when writers commit out of position order.

The first test is the control: with plain inserts (no append lock) a writer that
commits late makes a position-following reader skip its event. The second runs
the same shape through ``postgres.append`` with several concurrent appenders
and checks the reader sees every event exactly once, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg

from newsflow.adapters import postgres
from newsflow.domain.events import NewEvent, RecordedEvent
from newsflow.readside.log_reader import LogReader

RAW_INSERT = (
    "INSERT INTO newsflow.events (event_id, stream_id, stream_version, type, schema_version, payload)"
    " VALUES (gen_random_uuid(), $1, 1, 'Noted', 1, '{}') RETURNING position"
)


def _ev(stream: str) -> NewEvent:
    return NewEvent(stream, "Noted", 1, {}, {})


async def test_control_plain_inserts_let_a_naive_reader_skip_a_late_commit(pool: asyncpg.Pool) -> None:
    late = await pool.acquire()
    tx = late.transaction()
    await tx.start()
    late_position = await late.fetchval(RAW_INSERT, "late")
    async with pool.acquire() as conn:
        early_position = await conn.fetchval(RAW_INSERT, "early")
        assert early_position > late_position
        seen = [e.position for e in await postgres.read_after(conn, 0, 100)]
        checkpoint = max(seen)
        await tx.commit()
        await pool.release(late)
        after = [e.position for e in await postgres.read_after(conn, checkpoint, 100)]
    assert late_position not in seen + after, "the hazard this design guards against did not occur"


async def test_concurrent_appenders_with_a_late_committer_are_read_exactly_once(pool: asyncpg.Pool) -> None:
    seen: list[int] = []

    async def handler(conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        seen.extend(e.position for e in events)

    reader = LogReader("test.gap-free", pool, handler, page_size=7)
    stop = asyncio.Event()

    async def follow() -> None:
        while not stop.is_set():
            if not await reader.step():
                await asyncio.sleep(0.001)

    async def appender(name: str, transactions: int) -> list[int]:
        positions: list[int] = []
        for i in range(transactions):
            async with pool.acquire() as conn, conn.transaction():
                positions += await postgres.append(conn, [_ev(f"{name}-{i}") for _ in range(3)])
            await asyncio.sleep(0)
        return positions

    async def late_appender() -> list[int]:
        async with pool.acquire() as conn, conn.transaction():
            positions = await postgres.append(conn, [_ev("late") for _ in range(3)])
            await asyncio.sleep(1.0)  # holds its transaction open while the others want to commit
        return positions

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    results = await asyncio.gather(
        appender("a", 40), late_appender(), appender("b", 40), appender("c", 40), appender("d", 40)
    )
    written = sorted(p for positions in results for p in positions)
    async with pool.acquire() as conn:
        head = await postgres.head_position(conn)
    async with asyncio.timeout(30):
        while not seen or seen[-1] < head:
            assert not follower.done(), follower
            await asyncio.sleep(0.01)
    stop.set()
    await follower
    assert len(written) == 4 * 40 * 3 + 3
    assert seen == written, "reader skipped or repeated events"
    async with pool.acquire() as conn:
        assert await postgres.load_checkpoint(conn, "test.gap-free") == written[-1]
