"""The story feed end to end: real broker, real PostgreSQL, the real projector and feed reader.

A plain aiokafka consumer reads the topic from its beginning; like any consumer
of the feed it keeps the first record of each ``record_id``. What it ends with
must match ``dashboard.stories``, every decision in the log must reach it once,
and each alert once per story and rule, across restarts of the feed reader and
across a page that was published but whose checkpoint never committed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import jsonschema
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from structlog.testing import capture_logs
from test_stories import ASSIGNED_SQL, _fill
from test_story_merges import assigned, cleaned, merged, started

from conftest import daemon_env, role_url, running_daemon, settings_for, wait_until
from newsflow.adapters import postgres
from newsflow.adapters.embedded import EmbeddedBroker, EmbeddedPostgres
from newsflow.app.daemon import run_services
from newsflow.domain.events import ArticleCleaned, NewEvent, RecordedEvent
from newsflow.domain.story_feed import DECISION_TYPES
from newsflow.readside import story_feed
from newsflow.readside.log_reader import LogReader
from newsflow.settings import Settings

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "story_feed.v1.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
COMPARED = ("headline", "article_count", "source_count", "sources", "languages", "top_entities")
BASE = datetime(2024, 6, 3, 9, tzinfo=UTC)
FOLLOW = [sys.executable, "-m", "newsflow", "stories", "follow", "--from-beginning"]


async def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes, dict[str, Any]]]:
    """Every record on the topic so far, as (key, value), partition by partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        assert topic in await consumer.topics()  # also loads the topic's metadata
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        out: list[tuple[bytes, dict[str, Any]]] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                out.extend((m.key or b"", json.loads(m.value or b"{}")) for m in batch)
        return out
    finally:
        await consumer.stop()


def first_of_each(records: list[tuple[bytes, dict[str, Any]]]) -> list[dict[str, Any]]:
    """What a consumer that drops repeated record ids keeps, after checking every record's shape and key."""
    kept: dict[str, dict[str, Any]] = {}
    for key, value in records:
        VALIDATOR.validate(value)
        assert key.decode() == value["story_id"]
        kept.setdefault(value["record_id"], value)
    return list(kept.values())


def latest_updates(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["kind"] == "story_updated":
            seen = latest.get(r["story_id"])
            if seen is None or (r["projected_through"], r["position"]) > (seen["projected_through"], seen["position"]):
                latest[r["story_id"]] = r
    return latest


async def decision_events(pool: asyncpg.Pool) -> dict[str, str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT event_id, type FROM newsflow.events WHERE type = ANY($1::text[])", list(DECISION_TYPES)
        )
    return {str(r["event_id"]): r["type"] for r in rows}


async def assert_matches_dashboard(settings: Settings, records: list[dict[str, Any]]) -> None:
    """The latest story-updated record of each story is its dashboard.stories row; the other stories merged away."""
    dash = await asyncpg.connect(role_url(settings.database_url, "newsflow_dashboard"))
    try:
        rows = {str(r["id"]): r for r in await dash.fetch("SELECT * FROM dashboard.stories")}
    finally:
        await dash.close()
    latest = latest_updates(records)
    absorbed = {s for r in records if r["kind"] == "stories_merged" for s in r["merged_story_ids"]}
    assert rows and set(rows) <= set(latest)
    assert set(latest) - set(rows) <= absorbed
    for story_id, row in rows.items():
        update = latest[story_id]
        expected = {k: row[k] for k in COMPARED} | {"headline": " ".join(row["headline"].split())}
        assert {k: update[k] for k in COMPARED} == expected, story_id
        assert update["first_seen"] == row["first_seen"].isoformat().replace("+00:00", "Z")
        assert update["last_seen"] == row["last_seen"].isoformat().replace("+00:00", "Z")


def assert_each_decision_once(records: list[dict[str, Any]], decisions: dict[str, str]) -> None:
    kinds = {"StoryStarted": "story_started", "ArticleAssignedToStory": "article_assigned"}
    kinds["StoriesMerged"] = "stories_merged"
    published = Counter((r["event_id"], r["kind"]) for r in records if r["kind"] in kinds.values())
    assert published == Counter((event_id, kinds[t]) for event_id, t in decisions.items())


async def feed_caught_up(pool: asyncpg.Pool) -> bool:
    async with pool.acquire() as conn:
        head = await postgres.head_position(conn)
        return head > 0 and await postgres.load_checkpoint(conn, story_feed.READER) == head


async def test_a_consumer_of_the_feed_sees_the_stories_of_the_dashboard_and_each_alert_once(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Seeds, then a copy and an unrelated article, through the real pipeline: two daemon runs, so one restart."""
    settings = settings.model_copy(update={"alert_min_articles": 2, "alert_min_sources": 3})
    await _fill(settings, pool, tmp_path)  # the daemon stops once 7 articles are in stories: the feed may lag
    async with running_daemon(settings):
        await wait_until(lambda: feed_caught_up(pool), what="the feed at the log head")
    raw = await read_topic(settings.kafka_bootstrap, settings.stories_topic)
    records = first_of_each(raw)
    assert_each_decision_once(records, await decision_events(pool))
    assert sum(r["kind"] == "article_assigned" for r in records) == await _count(pool, ASSIGNED_SQL)
    await assert_matches_dashboard(settings, records)
    latest = latest_updates(records)
    seed_story = max(latest.values(), key=lambda r: r["article_count"])
    assert seed_story["article_count"] == 6 and seed_story["source_count"] >= 3
    alerts = [r for r in records if r["kind"] == "alert"]
    assert sorted((a["story_id"], a["rule"]) for a in alerts) == sorted(
        (seed_story["story_id"], rule) for rule in ("min_articles>=2", "min_sources>=3")
    )
    assert all(a["value"] >= a["threshold"] for a in alerts)
    async with pool.acquire() as conn:
        stored = await conn.fetch("SELECT story_id, rule, record_id FROM newsflow.story_alerts")
    assert sorted((str(s["story_id"]), s["rule"], str(s["record_id"])) for s in stored) == sorted(
        (a["story_id"], a["rule"], a["record_id"]) for a in alerts
    )


async def _count(pool: asyncpg.Pool, sql: str) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval(sql))


# --- a synthetic stream of decisions, appended straight to the log ------------------------------------------------


def article(article_id: uuid.UUID, source: str, at: datetime) -> NewEvent:
    """test_story_merges' cleaned article, from ``source`` at ``at``, with a two-line title."""
    update = {"source": source, "published_at": at, "fetched_at": at, "url": f"https://feed.invalid/{article_id}"}
    update["title"] = f"Bridge report {article_id.hex[:6]}\nsecond line"
    return _changed(cleaned(article_id, 0), update)


def _changed(event: NewEvent, update: dict[str, object]) -> NewEvent:
    return NewEvent.of(event.stream_id, ArticleCleaned.model_validate(event.payload).model_copy(update=update), {})


def revision(event: NewEvent) -> NewEvent:
    """The article of an ``article`` event come again with another title (as a changed URL would)."""
    return _changed(event, {"title": "Bridge reopens, revised"})


def decision_batches(stories: int, per_story: int) -> list[list[NewEvent]]:
    """One transaction per article, the stories interleaved; the second story is merged into the first at the end.

    Story ``i``'s articles come from ``i + 1`` sources at most, ten minutes apart, so the rules fire for some
    stories only.
    """
    ids = [uuid.uuid4() for _ in range(stories)]
    members: list[list[uuid.UUID]] = [[] for _ in range(stories)]
    batches: list[list[NewEvent]] = []
    for n in range(per_story):
        for s, story in enumerate(ids):
            a = uuid.uuid4()
            members[s].append(a)
            text = article(a, f"Outlet {n % (s + 1)}", BASE + timedelta(minutes=10 * n + s))
            batch = [text, started(story, a, 0.0), assigned(story, a, True)] if n == 0 else [text]
            batches.append(batch if n == 0 else [*batch, assigned(story, a, False)])
    bridge = uuid.uuid4()
    batches.append(
        [
            article(bridge, "Outlet 9", BASE + timedelta(hours=3)),
            merged(ids[0], ids[1], bridge),
            assigned(ids[0], bridge, False),
        ]
    )
    return batches


async def append_all(pool: asyncpg.Pool, batches: list[list[NewEvent]]) -> None:
    for batch in batches:
        async with pool.acquire() as conn, conn.transaction():
            await postgres.append(conn, batch)


@pytest.fixture
def feed_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"alert_min_sources": 3, "alert_min_articles_per_hour": 4, "projection_batch": 7})


async def test_a_restart_mid_stream_publishes_nothing_twice_that_a_consumer_keeps_and_loses_nothing(
    feed_settings: Settings, pool: asyncpg.Pool
) -> None:
    batches = decision_batches(stories=5, per_story=8)
    half = len(batches) // 2
    for part in (batches[:half], batches[half:]):
        stop = asyncio.Event()
        services = asyncio.create_task(run_services(feed_settings, ("projector", "feed"), stop))
        await append_all(pool, part[: len(part) // 2])
        # Stop while pages are still being read: the log grows under the reader as it stops.
        await wait_until(
            lambda: _reached(pool, story_feed.READER, 1), what="the feed to apply its first page", interval_s=0.02
        )
        appending = asyncio.create_task(append_all(pool, part[len(part) // 2 :]))
        stop.set()
        await asyncio.wait_for(services, 30)
        await appending
    stop = asyncio.Event()
    services = asyncio.create_task(run_services(feed_settings, ("projector", "feed"), stop))
    try:
        await wait_until(lambda: feed_caught_up(pool), what="the feed at the log head")
        # Story 4's first joiner, its representative article, gets a new title: a headline changes, no decision.
        await append_all(pool, [[revision(batches[2 * 5 - 1][0])]])
        await wait_until(lambda: feed_caught_up(pool), what="the feed past the revision")
    finally:
        stop.set()
        await asyncio.wait_for(services, 30)
    raw = await read_topic(feed_settings.kafka_bootstrap, feed_settings.stories_topic)
    records = first_of_each(raw)
    assert_each_decision_once(records, await decision_events(pool))
    await assert_matches_dashboard(feed_settings, records)
    assert sum(r["kind"] == "story_updated" and r["headline"] == "Bridge reopens, revised" for r in records) == 1
    assert_alerts_once(records)


def assert_alerts_once(records: list[dict[str, Any]]) -> None:
    """Each alert once; the stories of 3+ sources (story 0 after the merge too) fired min_sources, and every
    surviving story min_articles_per_hour (7 of its articles lie within an hour)."""
    alerts = Counter((r["story_id"], r["rule"]) for r in records if r["kind"] == "alert")
    assert alerts and set(alerts.values()) == {1}
    absorbed = {s for r in records if r["kind"] == "stories_merged" for s in r["merged_story_ids"]}
    for story_id, update in latest_updates(records).items():
        if story_id in absorbed:
            continue
        assert (story_id, "min_sources>=3") in alerts or update["source_count"] < 3
        assert (story_id, "min_articles_per_hour>=4") in alerts


async def _reached(pool: asyncpg.Pool, reader: str, position: int) -> bool:
    async with pool.acquire() as conn:
        return await postgres.load_checkpoint(conn, reader) >= position


class Crash(Exception):
    """The reader dies after its records reached the broker, before its checkpoint commits."""


async def test_a_page_published_but_not_checkpointed_is_published_again_with_the_same_record_ids(
    feed_settings: Settings, pool: asyncpg.Pool
) -> None:
    await append_all(pool, decision_batches(stories=3, per_story=6))
    from newsflow.readside import projections

    await LogReader(projections.STORIES_READER, pool, projections.apply_events).catch_up()
    feed = story_feed.StoryFeed(feed_settings, pool)
    async with feed.connected():

        async def crash_after_publishing(conn: asyncpg.Connection, events: list[RecordedEvent]) -> None:
            await feed.handle(conn, events)
            raise Crash

        crashing = LogReader(
            story_feed.READER, pool, crash_after_publishing, page_size=40, horizon=story_feed.projected_position
        )
        with pytest.raises(Crash):
            await crashing.step()
        assert await _count(pool, "SELECT count(*) FROM newsflow.story_alerts") == 0  # rolled back
        assert await _count(pool, "SELECT count(*) FROM newsflow.checkpoints WHERE name = 'feed.stories'") == 0
        await feed.reader().catch_up()
    raw = await read_topic(feed_settings.kafka_bootstrap, feed_settings.stories_topic)
    repeated = Counter(v["record_id"] for _, v in raw)
    assert max(repeated.values()) == 2, "the first page reached the broker twice"
    twice = [v for _, v in raw if repeated[v["record_id"]] == 2]
    assert {v["kind"] for v in twice} >= {"story_started", "article_assigned", "alert"}
    records = first_of_each(raw)
    assert_each_decision_once(records, await decision_events(pool))
    await assert_matches_dashboard(feed_settings, records)
    alerts = Counter((r["story_id"], r["rule"]) for r in records if r["kind"] == "alert")
    assert alerts and set(alerts.values()) == {1}
    assert await _count(pool, "SELECT count(*) FROM newsflow.story_alerts") == len(alerts)


async def test_stories_follow_prints_each_record_once_as_a_line(
    feed_settings: Settings, pool: asyncpg.Pool, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    await append_all(pool, decision_batches(stories=2, per_story=3))
    from newsflow.readside import projections

    await LogReader(projections.STORIES_READER, pool, projections.apply_events).catch_up()
    feed = story_feed.StoryFeed(feed_settings, pool)
    async with feed.connected():
        await feed.reader().catch_up()
        async with pool.acquire() as conn:
            await postgres.save_checkpoint(conn, story_feed.READER, 0)
        await feed.reader().catch_up()  # everything once more: the consumer must drop the repeats
    raw = await read_topic(feed_settings.kafka_bootstrap, feed_settings.stories_topic)
    unique = first_of_each(raw)
    times = Counter(v["record_id"] for _, v in raw)
    assert all(times[r["record_id"]] == (1 if r["kind"] == "alert" else 2) for r in unique)  # an alert fired once
    assert any(r["kind"] == "alert" for r in unique)
    env = daemon_env(feed_settings, tmp_path)

    def follow(*flags: str) -> list[str]:
        done = subprocess.run(
            [*FOLLOW, "--count", str(len(unique)), *flags],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout.splitlines()

    as_json = [json.loads(line) for line in await asyncio.to_thread(follow, "--json")]
    assert sorted(r["record_id"] for r in as_json) == sorted(r["record_id"] for r in unique)
    lines = await asyncio.to_thread(follow)
    assert len(lines) == len(unique)
    updates = [line for line in lines if " articles, " in line]
    assert updates and all("Bridge report" in line and "second line" in line for line in updates)
    assert any("story started by article" in line for line in lines)
    assert any(" absorbed " in line for line in lines)


async def test_the_feed_waits_out_a_stopped_database_and_loses_nothing(broker: EmbeddedBroker, tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pgdata")  # its own server: stopping it leaves the other tests' alone
    await asyncio.to_thread(pg.start)
    try:
        url = await pg.ensure_database("feed_outage")
        await postgres.migrate_url(url)
        settings = settings_for(broker, url)
        batches = decision_batches(stories=3, per_story=6)
        stop = asyncio.Event()
        services = asyncio.create_task(run_services(settings, ("projector", "feed"), stop))
        try:
            pool = await postgres.create_pool(url, 2)
            try:
                await append_all(pool, batches[:8])
                await wait_until(lambda: feed_caught_up(pool), what="the feed before the outage")
            finally:
                await pool.close()
            await asyncio.to_thread(pg.stop)
            await asyncio.sleep(1.0)
            assert not services.done(), f"the services stopped during the outage: {services}"
            await asyncio.to_thread(pg.start)
            pool = await postgres.create_pool(url, 2)
            try:
                await append_all(pool, batches[8:])
                await wait_until(lambda: feed_caught_up(pool), what="the feed after the outage")
                records = first_of_each(await read_topic(settings.kafka_bootstrap, settings.stories_topic))
                assert_each_decision_once(records, await decision_events(pool))
                await assert_matches_dashboard(settings, records)
            finally:
                await pool.close()
        finally:
            stop.set()
            await asyncio.wait_for(services, 30)
    finally:
        await asyncio.to_thread(pg.stop)


async def test_the_feed_waits_for_a_broker_that_is_not_there_yet(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    later = EmbeddedBroker(log_path=tmp_path / "later-broker.log")  # a free port, nothing listening yet
    settings = settings.model_copy(update={"kafka_bootstrap": later.bootstrap})
    await append_all(pool, decision_batches(stories=2, per_story=3))
    stop = asyncio.Event()
    with capture_logs() as logs:
        services = asyncio.create_task(run_services(settings, ("projector", "feed"), stop))
        try:
            await wait_until(
                lambda: _logged(logs, "feed.broker_unavailable"), what="the feed to find no broker", timeout_s=120
            )
            assert not services.done() and not await _reached(pool, story_feed.READER, 1)
            later.start()
            await wait_until(lambda: feed_caught_up(pool), what="the feed once the broker is up", timeout_s=120)
            records = first_of_each(await read_topic(later.bootstrap, settings.stories_topic))
            assert_each_decision_once(records, await decision_events(pool))
        finally:
            stop.set()
            await asyncio.wait_for(services, 30)
            later.stop()


async def _logged(logs: list[dict[str, Any]], event: str) -> bool:
    return any(e["event"] == event for e in logs)
