"""PostgreSQL adapter: connection pool, migrations, the event store and checkpoints.

Gap-free reading: every append transaction takes one transaction-scoped advisory
lock (``APPEND_LOCK``) right before inserting and holds it until commit. Appends
therefore commit in position order, so a reader that asks for ``position > N``
can never see position N+2 before N+1 becomes visible. The price is that
appends are serialized; writers batch (one transaction per Kafka batch) and do
their CPU work before opening the transaction, which keeps the lock short.
Positions of rolled-back transactions stay as harmless holes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from typing import Any

import asyncpg
import structlog

from newsflow.domain.events import NewEvent, RecordedEvent

log = structlog.get_logger(__name__)

APPEND_LOCK = 0x6E657773666C6F77  # "newsflow" as a 64-bit key
MIGRATION_LOCK = APPEND_LOCK + 1
NOTIFY_CHANNEL = "newsflow_events"
CHECKPOINT_CHANNEL = "newsflow_checkpoints"  # a log reader committed a page (payload: its name)


class WrongExpectedVersion(Exception):
    """An append's expected stream version did not match the stream (optimistic concurrency)."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


# Errors that say PostgreSQL is not there (stopped, restarting, unreachable), not that a statement is wrong.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, no route, socket gone
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.CannotConnectNowError,  # 57P03: starting up, shutting down
    asyncpg.AdminShutdownError,  # 57P01: terminated by a fast shutdown
    asyncpg.InterfaceError,  # a connection closed under the client
)


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc``, or an error it was raised from, means the database cannot be reached now."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _UNAVAILABLE):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


async def reachable(url: str) -> bool:
    """Whether a new connection to ``url`` can run a query now."""
    try:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close(timeout=2)
    except Exception as exc:
        if is_unavailable(exc):
            return False
        raise
    return True


async def create_pool(url: str, size: int = 4) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=size, init=_init_connection)
    assert pool is not None
    return pool


async def connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await _init_connection(conn)
    return conn


async def migrate(
    conn: asyncpg.Connection, dashboard_password: str | None = None, writer_password: str | None = None
) -> list[str]:
    """Apply the packaged migrations once each, under a lock so concurrent starters are safe.

    The role passwords are set on every run, so changing one in the settings takes effect at the next start.
    """
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS public.newsflow_migrations"
            " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM public.newsflow_migrations")}
        files = sorted(
            (f for f in resources.files("newsflow.adapters.migrations").iterdir() if f.name.endswith(".sql")),
            key=lambda f: f.name,
        )
        for f in files:
            if f.name in done:
                continue
            async with conn.transaction():
                await conn.execute(f.read_text())
                await conn.execute("INSERT INTO public.newsflow_migrations (name) VALUES ($1)", f.name)
            applied.append(f.name)
            log.info("migration.applied", migration=f.name)
        for role, password in (("newsflow_dashboard", dashboard_password), ("newsflow_writer", writer_password)):
            if password is not None:
                await conn.execute(f"ALTER ROLE {role} PASSWORD {_quote_literal(password)}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied


async def migrate_url(url: str, dashboard_password: str | None = None, writer_password: str | None = None) -> list[str]:
    """``migrate`` on a connection of its own."""
    conn = await connect(url)
    try:
        return await migrate(conn, dashboard_password, writer_password)
    finally:
        await conn.close()


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def row_to_event(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        position=row["position"],
        event_id=row["event_id"],
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        type=row["type"],
        schema_version=row["schema_version"],
        payload=row["payload"],
        metadata=row["metadata"],
        recorded_at=row["recorded_at"],
    )


EVENT_COLUMNS = "position, event_id, stream_id, stream_version, type, schema_version, payload, metadata, recorded_at"


async def stream_versions(conn: asyncpg.Connection, stream_ids: Sequence[str]) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT stream_id, max(stream_version) AS v FROM newsflow.events"
        " WHERE stream_id = ANY($1::text[]) GROUP BY stream_id",
        list(set(stream_ids)),
    )
    return {r["stream_id"]: r["v"] for r in rows}


async def lock_appends(conn: asyncpg.Connection) -> None:
    """Take the append lock for the rest of the caller's transaction (re-entrant)."""
    if not conn.is_in_transaction():
        raise RuntimeError("appends must run inside a transaction")
    await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)


async def append(conn: asyncpg.Connection, events: Sequence[NewEvent]) -> list[int]:
    """Append events atomically; must run inside the caller's transaction.

    Events of one stream get consecutive versions in the order given. An event
    with ``expected_version`` set fails the whole append with
    ``WrongExpectedVersion`` unless its stream is at exactly that version.
    """
    if not events:
        return []
    await lock_appends(conn)
    current = await stream_versions(conn, [e.stream_id for e in events])
    versions: list[int] = []
    for e in events:
        at = current.get(e.stream_id, 0)
        if e.expected_version is not None and e.expected_version != at:
            raise WrongExpectedVersion(f"stream {e.stream_id} is at version {at}, expected {e.expected_version}")
        current[e.stream_id] = at + 1
        versions.append(at + 1)
    try:
        # One recorded_at for the whole append (taken under the lock), so a point in time never falls
        # between the events of one append: `stories show --as-of` sees whole decisions.
        rows = await conn.fetch(
            """
            WITH now_ AS MATERIALIZED (SELECT clock_timestamp() AS at)
            INSERT INTO newsflow.events
                (event_id, stream_id, stream_version, type, schema_version, payload, metadata, recorded_at)
            SELECT e.*, now_.at
            FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::int[], $6::jsonb[], $7::jsonb[]) AS e,
                 now_
            RETURNING position
            """,
            [e.event_id for e in events],
            [e.stream_id for e in events],
            versions,
            [e.type for e in events],
            [e.schema_version for e in events],
            [e.payload for e in events],
            [e.metadata for e in events],
        )
    except asyncpg.UniqueViolationError as exc:
        raise WrongExpectedVersion(str(exc)) from exc
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return [r["position"] for r in rows]


async def read_after(
    conn: asyncpg.Connection, position: int, limit: int, until: int | None = None
) -> list[RecordedEvent]:
    """Events with ``position`` < position <= ``until`` (None: no bound) in order; gap-free thanks to serialized appends."""
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM newsflow.events WHERE position > $1 AND ($3::bigint IS NULL OR position <= $3)"
        " ORDER BY position LIMIT $2",
        position,
        limit,
        until,
    )
    return [row_to_event(r) for r in rows]


async def read_stream(conn: asyncpg.Connection, stream_id: str) -> list[RecordedEvent]:
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM newsflow.events WHERE stream_id = $1 ORDER BY stream_version", stream_id
    )
    return [row_to_event(r) for r in rows]


async def read_stream_before(
    conn: asyncpg.Connection, stream_id: str, position: int, types: Sequence[str]
) -> list[RecordedEvent]:
    """A stream's events of the given types recorded before ``position``, in order."""
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM newsflow.events"
        " WHERE stream_id = $1 AND position < $2 AND type = ANY($3::text[]) ORDER BY position",
        stream_id,
        position,
        list(types),
    )
    return [row_to_event(r) for r in rows]


async def position_at(conn: asyncpg.Connection, when: datetime) -> int:
    """The last position recorded at or before ``when`` (0: none).

    Appends are serialized under the append lock and stamped with
    ``clock_timestamp()`` inside it, so ``recorded_at`` grows with position: a
    binary search over the primary key answers in a few dozen index look-ups,
    where a filter on ``recorded_at`` would scan the whole log.
    """
    latest = "SELECT position, recorded_at FROM newsflow.events WHERE position <= $1 ORDER BY position DESC LIMIT 1"
    lo, hi = 0, await head_position(conn)
    while lo < hi:  # the largest bound whose latest event was recorded by ``when``
        mid = (lo + hi + 1) // 2
        row = await conn.fetchrow(latest, mid)
        if row is None or row["recorded_at"] <= when:
            lo = mid
        else:
            hi = mid - 1
    row = await conn.fetchrow(latest, lo)
    return int(row["position"]) if row is not None else 0


async def head_position(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM newsflow.events"))


async def article_versions(conn: asyncpg.Connection, stream_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
    """Per article stream: the content fingerprint of its latest ArticleReceived, and how many it has."""
    rows = await conn.fetch(
        """
        SELECT stream_id,
               (array_agg(payload->>'content_sha256' ORDER BY stream_version DESC))[1] AS h,
               count(*) AS n
        FROM newsflow.events
        WHERE stream_id = ANY($1::text[]) AND type = 'ArticleReceived'
        GROUP BY stream_id
        """,
        list(set(stream_ids)),
    )
    return {r["stream_id"]: (r["h"], r["n"]) for r in rows}


async def load_checkpoint(conn: asyncpg.Connection, name: str) -> int:
    value = await conn.fetchval("SELECT position FROM newsflow.checkpoints WHERE name = $1", name)
    return int(value or 0)


async def save_checkpoint(conn: asyncpg.Connection, name: str, position: int) -> None:
    await conn.execute(
        "INSERT INTO newsflow.checkpoints (name, position) VALUES ($1, $2)"
        " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
        name,
        position,
    )


async def load_offsets(conn: asyncpg.Connection, group_id: str, topic: str, *, lock: bool = False) -> dict[int, Any]:
    """Stored offsets of a group on a topic: partition → record(next_offset, cluster_id)."""
    rows = await conn.fetch(
        "SELECT partition, next_offset, cluster_id FROM newsflow.consumer_offsets"
        " WHERE group_id = $1 AND topic = $2" + (" FOR UPDATE" if lock else ""),
        group_id,
        topic,
    )
    return {r["partition"]: r for r in rows}


async def save_offsets(
    conn: asyncpg.Connection, group_id: str, topic: str, offsets: dict[int, int], cluster_id: str | None
) -> None:
    await conn.executemany(
        """
        INSERT INTO newsflow.consumer_offsets (group_id, topic, partition, next_offset, cluster_id)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (group_id, topic, partition)
        DO UPDATE SET next_offset = EXCLUDED.next_offset, cluster_id = EXCLUDED.cluster_id, updated_at = now()
        """,
        [(group_id, topic, p, o, cluster_id) for p, o in offsets.items()],
    )
