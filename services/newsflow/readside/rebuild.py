"""`newsflow projections rebuild`: replay the whole log into fresh tables, then swap them in.

The replay runs beside the live projector, into copies of the projection
tables in the schema ``projection_rebuild`` (same code, pointed there through
``search_path``). The swap is one transaction: it locks the live projector's
checkpoint row (the live projector waits), replays whatever arrived meanwhile,
replaces the live tables' rows with the rebuilt ones, and sets the checkpoint to
the last event the rebuild applied. The live rows are replaced with DELETE, not
TRUNCATE: dashboards keep reading the old rows (MVCC) until that commit, without
waiting on a table lock, and the views stay bound to the same tables.
"""

from __future__ import annotations

import asyncpg
import structlog
from tqdm import tqdm

from newsflow.adapters import postgres
from newsflow.domain.events import registry
from newsflow.readside import projections

log = structlog.get_logger(__name__)

SHADOW = "projection_rebuild"
PROJECTIONS = {"stories": (projections.STORIES_READER, projections.TABLES)}


async def _replay(conn: asyncpg.Connection, position: int, page: int, bar: tqdm | None = None) -> int:
    """Apply every event after ``position`` to the shadow tables; returns the last position applied."""
    while True:
        async with conn.transaction():
            events = await postgres.read_after(conn, position, page)
            if not events:
                return position
            await conn.execute(f"SET LOCAL search_path TO {SHADOW}")
            await projections.apply(conn, [registry.upcast(e) for e in events])
        if bar is not None:
            bar.update(events[-1].position - position)
        position = events[-1].position


async def rebuild(
    pool: asyncpg.Pool, name: str = "stories", page: int = 1000, progress: bool = False
) -> dict[str, int]:
    """Rebuild projection ``name``; returns the rows per table and the position it was rebuilt to."""
    if name not in PROJECTIONS:
        raise ValueError(f"unknown projection {name!r}; one of {', '.join(PROJECTIONS)}")
    reader, tables = PROJECTIONS[name]
    async with pool.acquire() as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SHADOW} CASCADE")
        await conn.execute(f"CREATE SCHEMA {SHADOW}")
        await projections.create_empty_tables(conn, SHADOW)
        head = await postgres.head_position(conn)
        with tqdm(total=head, desc=f"rebuild {name}", unit="event", disable=not progress) as bar:
            position = await _replay(conn, 0, page, bar)
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO newsflow.checkpoints (name, position) VALUES ($1, 0) ON CONFLICT DO NOTHING", reader
            )
            await conn.execute("SELECT position FROM newsflow.checkpoints WHERE name = $1 FOR UPDATE", reader)
            position = await _replay(conn, position, page)
            counts: dict[str, int] = {}
            for table in tables:
                await conn.execute(f"DELETE FROM {projections.SCHEMA}.{table}")
            for table in tables:
                status = await conn.execute(f"INSERT INTO {projections.SCHEMA}.{table} SELECT * FROM {SHADOW}.{table}")
                counts[table] = int(status.split()[-1])
            await postgres.save_checkpoint(conn, reader, position)
            await conn.execute(f"DROP SCHEMA {SHADOW} CASCADE")
    log.info("projection.rebuilt", projection=name, position=position, rows=counts)
    return {**counts, "position": position}
