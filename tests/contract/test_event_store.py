"""The event store on a real PostgreSQL: append, concurrency control, protection, roles, upcasting."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

import asyncpg
import pytest

from conftest import role_url
from newsflow.adapters import postgres
from newsflow.domain.events import ArticleRejected, EventPayload, EventRegistry, NewEvent, registry
from newsflow.readside import projections
from newsflow.readside.log_reader import LogReader


def _event(stream: str, n: int = 0, expected: int | None = None) -> NewEvent:
    return NewEvent(stream, "Noted", 1, {"n": n}, {"causation": {"kind": "test"}}, expected_version=expected)


async def test_append_assigns_stream_versions_and_global_positions(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        positions = await postgres.append(conn, [_event("s-1", 1), _event("s-2", 2), _event("s-1", 3)])
    async with pool.acquire() as conn:
        events = await postgres.read_after(conn, 0, 100)
        stream = await postgres.read_stream(conn, "s-1")
    assert [e.position for e in events] == positions == sorted(positions)
    assert [(e.stream_id, e.stream_version, e.payload["n"]) for e in events] == [
        ("s-1", 1, 1),
        ("s-2", 1, 2),
        ("s-1", 2, 3),
    ]
    assert [e.stream_version for e in stream] == [1, 2]
    assert events[0].metadata == {"causation": {"kind": "test"}}
    assert events[0].recorded_at.tzinfo is not None


async def test_wrong_expected_version_rejects_the_whole_append(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await postgres.append(conn, [_event("s", expected=0)])
    with pytest.raises(postgres.WrongExpectedVersion):
        async with pool.acquire() as conn, conn.transaction():
            await postgres.append(conn, [_event("other"), _event("s", expected=0)])
    async with pool.acquire() as conn:
        assert [e.stream_id for e in await postgres.read_after(conn, 0, 10)] == ["s"]
        async with conn.transaction():
            await postgres.append(conn, [_event("s", expected=1)])
        assert len(await postgres.read_stream(conn, "s")) == 2


async def test_append_outside_a_transaction_is_refused(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="inside a transaction"):
            await postgres.append(conn, [_event("s")])


async def test_database_refuses_update_delete_truncate_even_for_the_owner(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        async with conn.transaction():
            await postgres.append(conn, [_event("s")])
        for sql in (
            "UPDATE newsflow.events SET type = 'Tampered'",
            "DELETE FROM newsflow.events",
            "TRUNCATE newsflow.events",
        ):
            with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
                await conn.execute(sql)
        assert await conn.fetchval("SELECT count(*) FROM newsflow.events") == 1


async def test_writer_role_may_append_but_not_change(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE newsflow_writer")
            await postgres.append(conn, [_event("w")])
        for sql in ("UPDATE newsflow.events SET type = 'x'", "DELETE FROM newsflow.events", "TRUNCATE newsflow.events"):
            async with conn.transaction():
                await conn.execute("SET LOCAL ROLE newsflow_writer")
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(sql)


async def test_dashboard_role_reads_views_only(database_url: str, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await postgres.append(conn, [_event("s")])
    dash = await asyncpg.connect(role_url(database_url, "newsflow_dashboard"))
    try:
        for view in ("stories", "articles", "story_articles", "rejections"):
            await dash.fetch(f"SELECT * FROM dashboard.{view} LIMIT 1")
        for sql in (
            "SELECT * FROM newsflow.events",
            "SELECT * FROM projection.stories",
            "SELECT * FROM newsflow.consumer_offsets",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await dash.fetch(sql)
        for sql in (
            "INSERT INTO newsflow.events (event_id, stream_id, stream_version, type, schema_version, payload)"
            " VALUES (gen_random_uuid(), 'x', 1, 't', 1, '{}')",
            "DELETE FROM dashboard.stories",
            "CREATE TABLE public.sneaky (id int)",
            "CREATE TABLE dashboard.sneaky (id int)",
        ):
            with pytest.raises((asyncpg.InsufficientPrivilegeError, asyncpg.ReadOnlySQLTransactionError)):
                await dash.execute(sql)
    finally:
        await dash.close()


async def test_migrations_are_idempotent(database_url: str) -> None:
    conn = await postgres.connect(database_url)
    try:
        assert await postgres.migrate(conn) == []
    finally:
        await conn.close()


class _Renamed(EventPayload):
    event_type: ClassVar[str] = "Renamed"
    schema_version: ClassVar[int] = 3
    full_name: str
    locale: str


async def test_old_event_versions_are_upcast_when_read(pool: asyncpg.Pool) -> None:
    reg = EventRegistry()
    reg.register(_Renamed)
    reg.register_upcaster("Renamed", 1, lambda p: {"full_name": p["name"]})
    reg.register_upcaster("Renamed", 2, lambda p: {**p, "locale": "und"})
    async with pool.acquire() as conn, conn.transaction():
        await postgres.append(
            conn,
            [
                NewEvent("r", "Renamed", 1, {"name": "Xi Jinping"}, {}),
                NewEvent.of("r", _Renamed(full_name="Vladimir Putin", locale="en"), {}),
            ],
        )
    async with pool.acquire() as conn:
        stored = await postgres.read_stream(conn, "r")
    assert [e.schema_version for e in stored] == [1, 3]
    old, new = (reg.parse(e) for e in stored)
    assert old == _Renamed(full_name="Xi Jinping", locale="und")
    assert new == _Renamed(full_name="Vladimir Putin", locale="en")
    assert reg.upcast(stored[0]).schema_version == 3 and stored[0].payload == {"name": "Xi Jinping"}


async def test_rejections_stored_as_v1_still_project_with_an_unknown_source(pool: asyncpg.Pool) -> None:
    """ArticleRejected v2 added ``source``; a v1 event in an old log reads as source None and still projects."""
    v1 = {
        "reason": "invalid_json",
        "detail": "Expecting value",
        "errors": [],
        "raw_sha256": "0" * 64,
        "raw_size": 3,
        "raw_preview": "e30=",
        "key": None,
        "dead_letter_topic": "dlq",
    }
    async with pool.acquire() as conn, conn.transaction():
        await postgres.append(conn, [NewEvent("rejection-old", "ArticleRejected", 1, v1, {})])
    await LogReader(projections.STORIES_READER, pool, projections.apply_events).catch_up()
    async with pool.acquire() as conn:
        (stored,) = await postgres.read_stream(conn, "rejection-old")
        row = await conn.fetchrow("SELECT reason, source FROM dashboard.rejections")
    assert stored.schema_version == 1 and registry.parse(stored) == ArticleRejected(**v1, source=None)
    assert (row["reason"], row["source"]) == ("invalid_json", None)


async def test_position_at_finds_the_last_event_recorded_by_a_time_across_holes(pool: asyncpg.Pool) -> None:
    """The binary search over positions that `stories show --as-of` uses, with a rolled-back append's hole."""
    cuts, lasts = [], []
    for i in range(4):
        if i == 2:  # a rolled-back append leaves a hole in the positions
            with pytest.raises(RuntimeError):
                async with pool.acquire() as conn, conn.transaction():
                    await postgres.append(conn, [NewEvent("hole", "Hole", 1, {}, {}) for _ in range(3)])
                    raise RuntimeError("roll back")
        async with pool.acquire() as conn, conn.transaction():
            positions = await postgres.append(conn, [NewEvent(f"s{i}", "Tick", 1, {"i": i}, {}) for _ in range(i + 1)])
        lasts.append(positions[-1])
        async with pool.acquire() as conn:
            cuts.append(await conn.fetchval("SELECT clock_timestamp()"))
    async with pool.acquire() as conn:
        first = await conn.fetchval("SELECT min(recorded_at) FROM newsflow.events")
        assert await postgres.position_at(conn, first - dt.timedelta(seconds=1)) == 0
        assert [await postgres.position_at(conn, c) for c in cuts] == lasts


def test_merges_stored_as_v1_read_as_bridges() -> None:
    """StoriesMerged v2 added ``reason``; every v1 merge was an article bridging stories."""
    import uuid

    from newsflow.domain.events import RecordedEvent, StoriesMerged

    story, other, article = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    v1 = RecordedEvent(
        1,
        uuid.uuid4(),
        f"story-{story}",
        2,
        "StoriesMerged",
        1,
        {
            "story_id": str(story),
            "clusterer_version": "3",
            "merged_story_ids": [str(other)],
            "bridging_article_id": str(article),
        },
        {},
        dt.datetime.now(dt.UTC),
    )
    parsed = registry.parse(v1)
    assert isinstance(parsed, StoriesMerged) and parsed.reason == "bridge" and parsed.merged_story_ids == [other]
