"""The story feed: each story decision, a story-updated record per story and page, and alerts, to Kafka.

A log reader (``feed.stories``) whose writes go to the ``newsflow.stories`` topic,
keyed by story id. Per page: build the records (``domain/story_feed.py``), send
them all and wait until the broker has acknowledged every one, and only then let
the reader commit its checkpoint, with the alerts that fired, in the transaction
it opened. A crash or outage between the acknowledgement and the commit sends the
page again: delivery is at least once, and every record sent again carries the
same ``record_id``, so a consumer that drops ids it has seen sees each record
once. Exactly once would need Kafka transactions, which the embedded broker lacks.

Story-updated records are read from the projection (``projection.stories``, the
rows behind ``dashboard.stories``), not kept in this reader: the reader reads no
further than the projector's checkpoint, so the rows already hold every decision
of the page, and a restart needs no state of its own to be right. Alerts fired
are stored in ``newsflow.story_alerts`` (migration 012) in the checkpoint's
transaction, so each fires once per story and rule across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from newsflow.adapters import kafka, postgres
from newsflow.app import outages
from newsflow.domain import story_feed
from newsflow.domain.events import RecordedEvent
from newsflow.readside.log_reader import LogReader
from newsflow.readside.projections import STORIES_READER
from newsflow.settings import Settings

log = structlog.get_logger(__name__)

READER = "feed.stories"
PARTITIONS = 4

SNAPSHOTS_SQL = """
    SELECT s.story_id, s.headline, s.article_count, s.source_count, s.sources, s.languages, s.top_entities,
           s.first_seen, s.last_seen,
           CASE WHEN $2 THEN (
               SELECT coalesce(max(n), 0) FROM (
                   SELECT count(*) OVER (ORDER BY a.first_seen RANGE BETWEEN interval '1 hour' PRECEDING AND CURRENT ROW)
                   FROM projection.articles a WHERE a.story_id = s.story_id
               ) AS w(n)
           ) ELSE 0 END AS peak_hour_articles,
           (SELECT position FROM newsflow.checkpoints WHERE name = $3) AS projected_through
    FROM projection.stories s
    WHERE s.story_id = ANY($1::uuid[])
"""


async def projected_position(conn: asyncpg.Connection) -> int:
    """The feed's horizon: how far the stories projection has applied the log."""
    return await postgres.load_checkpoint(conn, STORIES_READER)


async def read_snapshots(
    conn: asyncpg.Connection, story_ids: Sequence[uuid.UUID], peak_hour: bool
) -> dict[uuid.UUID, story_feed.StorySnapshot]:
    """The stories as the projection holds them; a story merged away meanwhile is absent."""
    rows = await conn.fetch(SNAPSHOTS_SQL, list(story_ids), peak_hour, STORIES_READER)
    return {r["story_id"]: story_feed.snapshot(dict(r)) for r in rows}


async def placed_articles(
    conn: asyncpg.Connection, article_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[uuid.UUID, int]]:
    """Article → (its story, the position of the decision that placed it), for the articles that have one."""
    if not article_ids:
        return {}
    rows = await conn.fetch(
        "SELECT article_id, story_id, story_position FROM projection.articles"
        " WHERE article_id = ANY($1::uuid[]) AND story_id IS NOT NULL AND story_position IS NOT NULL",
        list(set(article_ids)),
    )
    return {r["article_id"]: (r["story_id"], r["story_position"]) for r in rows}


async def fired_rules(conn: asyncpg.Connection, story_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
    fired: dict[uuid.UUID, set[str]] = {}
    for r in await conn.fetch(
        "SELECT story_id, rule FROM newsflow.story_alerts WHERE story_id = ANY($1::uuid[])", list(story_ids)
    ):
        fired.setdefault(r["story_id"], set()).add(r["rule"])
    return fired


async def store_alerts(conn: asyncpg.Connection, alerts: Sequence[story_feed.AlertRecord]) -> None:
    await conn.executemany(
        "INSERT INTO newsflow.story_alerts (story_id, rule, threshold, value, record_id, event_id, position)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        [(a.story_id, a.rule, a.threshold, a.value, a.record_id, a.event_id, a.position) for a in alerts],
    )


class StoryFeed:
    """The ``feed`` service: a log reader behind the stories projection, publishing to ``stories_topic``."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.rules = story_feed.alert_rules(
            settings.alert_min_articles, settings.alert_min_sources, settings.alert_min_articles_per_hour
        )
        self._producer: AIOKafkaProducer | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the log until ``stop``; a broker outage is waited out (the unpublished page is read again).

        A database outage leaves through the exception, for ``outages.until_stopped`` to wait out.
        """
        attempt = 0
        while not stop.is_set():
            try:
                await self._run(stop)
                return
            except KafkaError as exc:
                if stop.is_set():
                    return
                log.warning("feed.broker_unavailable", error=type(exc).__name__, attempt=attempt)
                await outages.sleep_unless_stopped(stop, outages.backoff_s(attempt))
                attempt += 1

    async def _run(self, stop: asyncio.Event) -> None:
        async with self.connected():
            log.info("feed.started", topic=self.settings.stories_topic, rules=[r.name for r in self.rules])
            await self.reader().run(stop)

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        """The topic exists and the producer is started, for as long as the block runs."""
        await kafka.ensure_topics(self.settings.kafka_bootstrap, [(self.settings.stories_topic, PARTITIONS)])
        producer = kafka.make_producer(self.settings.kafka_bootstrap, linger_ms=5)
        await producer.start()
        self._producer = producer
        try:
            yield
        finally:
            self._producer = None
            await producer.stop()

    def reader(self) -> LogReader:
        """The log reader that drives ``handle``: behind the projector, woken by its commits."""
        return LogReader(
            READER,
            self.pool,
            self.handle,
            page_size=self.settings.projection_batch,
            poll_interval_s=self.settings.poll_interval_s,
            horizon=projected_position,
        )

    async def handle(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        """LogReader handler: publish the page's records; the reader commits the checkpoint after this returns."""
        records = await self.records(conn, events)
        await self.publish(records)

    async def records(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> list[story_feed.FeedRecord]:
        """The page's records in the order they are sent; the alerts among them are stored (same transaction)."""
        records: list[story_feed.FeedRecord] = [r for e in events if (r := story_feed.decision_record(e)) is not None]
        articles = [a for e in events if (a := story_feed.updated_article(e)) is not None]
        last = story_feed.story_changes(events, await placed_articles(conn, articles))
        if not last:
            return records
        peak_hour = any(r.measure == "min_articles_per_hour" for r in self.rules)
        snapshots = await read_snapshots(conn, list(last), peak_hour)
        fired = await fired_rules(conn, list(snapshots)) if self.rules else {}
        alerts: list[story_feed.AlertRecord] = []
        for story_id, event in sorted(last.items(), key=lambda item: item[1].position):
            snap = snapshots.get(story_id)
            # Absent: merged into another story further on in the log (that merge's record follows). No article
            # yet: the page ended between StoryStarted and its first assignment; dashboard.stories hides it too.
            if snap is None or snap.summary.article_count == 0:
                continue
            records.append(story_feed.story_updated(event, snap))
            alerts.extend(story_feed.due_alerts(event, snap, self.rules, fired.get(story_id, set())))
        if alerts:
            await store_alerts(conn, alerts)
        return [*records, *alerts]

    async def publish(self, records: Sequence[story_feed.FeedRecord]) -> None:
        """Send every record and return once the broker has acknowledged all of them (or raise)."""
        if not records:
            return
        assert self._producer is not None, "publish() runs inside connected()"
        topic = self.settings.stories_topic
        sent = [
            await self._producer.send(topic, value=story_feed.encode(r), key=story_feed.kafka_key(r.story_id))
            for r in records
        ]
        await asyncio.gather(*sent)
