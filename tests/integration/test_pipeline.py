"""The pipeline end to end on a real broker and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer

from conftest import CONSUMED_SQL, RECEIVED_SQL, reaches, role_url, running_daemon, scalar, wait_until
from newsflow.adapters import kafka
from newsflow.app import status
from newsflow.app.publish import publish
from newsflow.domain.stages import SourceRecord
from newsflow.ingest.positioning import sought_before
from newsflow.ingest.worker import PipelineWorker
from newsflow.samples import SEEDS
from newsflow.settings import Settings

ARTICLES_SQL = "SELECT count(*) FROM dashboard.articles"
STORY_DECISIONS_SQL = "SELECT count(*) FROM newsflow.events WHERE type = 'ArticleAssignedToStory'"


def message(url: str, text: str | None, **extra: object) -> dict[str, object]:
    return {"url": url, "source": "Test Wire", "fetched_at": "2022-09-15T10:00:00+00:00", "text": text, **extra}


async def test_seed_articles_flow_into_events_and_dashboard_views(settings: Settings, pool: asyncpg.Pool) -> None:
    async with running_daemon(settings):
        assert await publish(settings.kafka_bootstrap, settings.raw_topic, [SEEDS], progress=False) == 5
        await wait_until(lambda: reaches(pool, 5, ARTICLES_SQL), what="5 articles in dashboard.articles")
    assert await scalar(pool, RECEIVED_SQL) == 5
    assert await scalar(pool, "SELECT count(*) FROM newsflow.events WHERE type = 'ArticleCleaned'") == 5
    async with pool.acquire() as conn:
        causes = await conn.fetch(
            "SELECT metadata->'causation' AS c FROM newsflow.events WHERE type = 'ArticleReceived'"
        )
        assert {c["c"]["topic"] for c in causes} == {settings.raw_topic}
        assert len({(c["c"]["partition"], c["c"]["offset"]) for c in causes}) == 5
        normalized = await conn.fetch("SELECT payload FROM newsflow.events WHERE type = 'ArticleCleaned'")
        titles = {r["payload"]["title"] for r in normalized}
        assert "Moscow: Putin-Xi meeting next week" in titles
        for r in normalized:  # the title is metadata, not repeated at the top of the body
            assert not r["payload"]["text"].startswith(r["payload"]["title"])
        st = await status.collect(settings, conn)
    assert st["total_lag"] == 0 and st["rejected"] == 0
    assert st["readers"]["projection.stories"]["behind"] == 0

    dash = await asyncpg.connect(role_url(settings.database_url, "newsflow_dashboard"))
    try:
        stories = await dash.fetch("SELECT * FROM dashboard.stories")
        articles = await dash.fetch("SELECT * FROM dashboard.articles")
        entities = {r["name"]: r for r in await dash.fetch("SELECT * FROM dashboard.entities")}
        daily = await dash.fetch(
            "SELECT day, articles FROM dashboard.entity_daily WHERE name = 'Vladimir Putin' ORDER BY day"
        )
        mentions = await dash.fetch("SELECT DISTINCT source FROM dashboard.entity_mentions WHERE name = 'Xi Jinping'")
    finally:
        await dash.close()
    assert len(articles) == 5 and all(a["story_id"] for a in articles)
    assert {a["language"] for a in articles} == {"en"} and all(a["duplicate_of"] is None for a in articles)
    # One registry entry per real-world entity across the five articles, whatever each article called it.
    assert entities["Vladimir Putin"]["article_count"] == 5 and entities["Xi Jinping"]["article_count"] == 5
    assert {"Putin", "Xi"} <= set(entities["Vladimir Putin"]["aliases"]) | set(entities["Xi Jinping"]["aliases"])
    sco = entities["Shanghai Cooperation Organization"]
    assert sco["type"] == "org" and "SCO" in sco["aliases"] and sco["article_count"] == 5
    assert not any(n in entities for n in ("Putin", "Xi", "SCO", "Argentina"))
    assert [(d["day"].date().isoformat(), d["articles"]) for d in daily] == [("2022-09-08", 1), ("2022-09-15", 4)]
    assert len(mentions) == 5
    assert sum(s["article_count"] for s in stories) == 5
    assert {a["source"] for a in articles} == {"Ns News Online", "DV", "Balkan Travellers", "La Verdad", "RES-EAP"}


async def test_same_message_twice_yields_one_set_of_events(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    line = json.dumps(message("https://wire.example/story-1", "Leaders met in Samarkand on Thursday."))
    feed = tmp_path / "twice.jsonl"
    feed.write_text(f"{line}\n{line}\n")
    async with running_daemon(settings):
        await publish(settings.kafka_bootstrap, settings.raw_topic, [feed], progress=False)
        await wait_until(
            lambda: reaches(pool, 2, CONSUMED_SQL, settings.consumer_group), what="both deliveries consumed"
        )
        await wait_until(lambda: reaches(pool, 1, STORY_DECISIONS_SQL), what="the clusterer's decision")
    assert await scalar(pool, RECEIVED_SQL) == 1
    # received, cleaned, language, dedup, vector, entities
    assert await scalar(pool, "SELECT count(*) FROM newsflow.events WHERE stream_id LIKE 'article-%'") == 6
    assert await scalar(pool, STORY_DECISIONS_SQL) == 1


async def test_changed_content_for_the_same_url_is_a_revision_and_views_follow_it(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    url = "https://wire.example/story-2"
    first = message(url, "Port strike ends\n\nDock workers returned to work on Thursday after a deal.")
    second = message(
        url,
        "Port strike ends after nine days\n\nDock workers returned to work on Thursday after a "
        "new wage deal was agreed overnight.",
        fetched_at="2022-09-15T12:00:00+00:00",
    )
    for i, msg in enumerate([first, second]):
        feed = tmp_path / f"v{i}.jsonl"
        feed.write_text(json.dumps(msg) + "\n")
    async with running_daemon(settings):
        await publish(settings.kafka_bootstrap, settings.raw_topic, [tmp_path / "v0.jsonl"], progress=False)
        await wait_until(lambda: reaches(pool, 1, ARTICLES_SQL), what="first version")
        await publish(settings.kafka_bootstrap, settings.raw_topic, [tmp_path / "v1.jsonl"], progress=False)
        await wait_until(
            lambda: reaches(pool, 1, "SELECT count(*) FROM dashboard.articles WHERE revision = 2"), what="revision"
        )
        head = await scalar(pool, "SELECT max(position) FROM newsflow.events WHERE stream_id LIKE 'article-%'")
        await wait_until(
            lambda: reaches(pool, head, "SELECT position FROM newsflow.checkpoints WHERE name = 'clusterer.stories'"),
            what="the clusterer past the revision",
        )
    # The revised article keeps its story: one decision, taken on the first version.
    assert await scalar(pool, STORY_DECISIONS_SQL) == 1
    async with pool.acquire() as conn:
        types = await conn.fetch(
            "SELECT type, payload FROM newsflow.events WHERE stream_id LIKE 'article-%' ORDER BY position"
        )
        title = await conn.fetchval("SELECT title FROM dashboard.articles WHERE url = $1", url)
    assert [t["type"] for t in types] == [
        "ArticleReceived",
        "ArticleCleaned",
        "ArticleLanguageDetected",
        "ArticleDedupKeyed",
        "ArticleEmbedded",
        "ArticleEntitiesExtracted",
        "ArticleReceived",
        "ArticleRevised",
        "ArticleCleaned",
        "ArticleLanguageDetected",
        "ArticleDedupKeyed",
        "ArticleEmbedded",
        "ArticleEntitiesExtracted",
    ]
    revised = types[7]["payload"]
    assert revised["revision"] == 2
    assert revised["previous_content_sha256"] == types[0]["payload"]["content_sha256"]
    assert revised["content_sha256"] == types[6]["payload"]["content_sha256"]
    assert title == "Port strike ends after nine days"


async def test_redelivered_batch_is_applied_once(settings: Settings, pool: asyncpg.Pool) -> None:
    """A batch handed over again (as after a crash before Kafka learned of progress) adds nothing."""
    await kafka.ensure_topics(settings.kafka_bootstrap, [(settings.raw_topic, 1), (settings.dlq_topic, 1)])
    worker = PipelineWorker(settings, pool)
    await worker.producer.start()
    try:
        records = [
            SourceRecord(
                settings.raw_topic, 0, i, None, json.dumps(message(f"https://x.example/{i}", f"text {i}")).encode()
            )
            for i in range(3)
        ] + [SourceRecord(settings.raw_topic, 0, 3, None, b"{broken")]
        await worker.handle_batch(records)
        await worker.handle_batch(records)
        await worker.handle_batch(records[1:])
    finally:
        await worker.producer.stop()
    assert await scalar(pool, RECEIVED_SQL) == 3
    assert await scalar(pool, "SELECT count(*) FROM newsflow.events WHERE type = 'ArticleRejected'") == 1
    assert await scalar(pool, "SELECT next_offset FROM newsflow.consumer_offsets") == 4


BAD_LINES = {
    "invalid_json": b'{"url": "https://bad.example/1", "source": ',
    "invalid_utf8": b'{"url": "https://bad.example/2", "text": "caf\xe9"}',
    "missing_field": json.dumps({"url": "https://bad.example/3", "text": "no source"}).encode(),
    "invalid_field": json.dumps(message("https://bad.example/4", "x", published_at="last week")).encode(),
    "empty_body": json.dumps(message("https://bad.example/5", "  \n\t ")).encode(),
    "not_an_object": b'"just a string"',
    # The cleaning stage's own reasons:
    "too_large": json.dumps(message("https://bad.example/6", "word " * 2_100_000)).encode(),
    "binary_content": json.dumps(message("https://bad.example/7", "%PDF-1.7\n%\ufffd\ufffd\n1 0 obj")).encode(),
    "html_too_deep": json.dumps(
        message("https://bad.example/8", None, html="<div>" * 5000 + "deep" + "</div>" * 5000)
    ).encode(),
    "empty_after_cleaning": json.dumps(message("https://bad.example/9", "Leave a Reply\n\nShare post:")).encode(),
    # Many tiny paragraphs: trafilatura needs minutes for this page (super-linear), the stage timeout cuts it.
    "cleaning_timeout": json.dumps(
        message("https://bad.example/10", None, html="<html><body>" + "<div><p>short text</p></div>" * 32000)
    ).encode(),
}


async def test_bad_input_is_rejected_with_reason_and_kept_on_the_dead_letter_topic(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    good = json.dumps(message("https://good.example/after-the-bad-ones", "A valid article after the bad ones."))
    feed = tmp_path / "bad.jsonl"
    feed.write_bytes(b"\n".join([*BAD_LINES.values(), good.encode()]) + b"\n")
    settings = settings.model_copy(update={"stage_timeout_s": 2.0})
    async with running_daemon(settings):
        await publish(settings.kafka_bootstrap, settings.raw_topic, [feed], progress=False)
        await wait_until(lambda: reaches(pool, 1, ARTICLES_SQL), what="the valid article behind the bad ones")
        await wait_until(
            lambda: reaches(pool, len(BAD_LINES), "SELECT count(*) FROM dashboard.rejections"), what="rejections"
        )
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT payload, metadata FROM newsflow.events WHERE type = 'ArticleRejected'")
    reasons = {r["payload"]["reason"] for r in rows}
    assert reasons == set(BAD_LINES)
    for r in rows:
        assert r["payload"]["detail"] and r["payload"]["dead_letter_topic"] == settings.dlq_topic
        assert r["metadata"]["causation"]["topic"] == settings.raw_topic

    consumer = AIOKafkaConsumer(
        settings.dlq_topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        dead: list = []
        async with asyncio.timeout(30):
            while len(dead) < len(BAD_LINES):
                batch = await consumer.getmany(timeout_ms=500)
                dead += [m for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    by_reason = {dict(m.headers)["newsflow.error.reason"].decode(): m for m in dead}
    assert set(by_reason) == set(BAD_LINES)
    for reason, m in by_reason.items():
        assert m.value == BAD_LINES[reason], "the original bytes are kept unchanged"
        headers = dict(m.headers)
        assert headers["newsflow.original.topic"].decode() == settings.raw_topic
        assert headers["newsflow.error.detail"]


async def test_a_regressed_partition_does_not_drop_other_partitions_records(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Found by the SIGKILL test: dropping the whole batch lost records the consumer had moved past."""
    worker = PipelineWorker(settings, pool)
    worker.positioner.expected = {0: 10, 1: 0}
    records = [SourceRecord(settings.raw_topic, 0, 3, None, b"{}")] + [
        SourceRecord(settings.raw_topic, 1, i, None, b"{}") for i in range(3)
    ]
    regressed, keep = worker.positioner.split_regressed(records)
    assert regressed == {0}
    assert [(r.partition, r.offset) for r in keep] == [(1, 0), (1, 1), (1, 2)]


class _SecondCommitFails(PipelineWorker):
    """Fault injected in our own code (broker and database stay real): the worker's second commit raises."""

    commits = 0

    async def _commit(self, outcomes, timings):  # type: ignore[no-untyped-def]
        self.commits += 1
        if self.commits == 2:
            raise RuntimeError("injected commit failure")
        await super()._commit(outcomes, timings)


async def test_no_batch_commits_past_a_failed_one_and_a_restart_applies_each_message_once(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Records overlap but commit in offset order: after a failed commit, nothing fetched later may commit."""
    settings = settings.model_copy(update={"batch_max_records": 2, "max_in_flight": 6, "raw_partitions": 1})
    feed = tmp_path / "feed.jsonl"
    urls = [f"https://order.example/{i}" for i in range(12)]  # more than max_in_flight: two commits at least
    feed.write_text(
        "".join(json.dumps(message(u, f"Article number {i} about the port.")) + "\n" for i, u in enumerate(urls))
    )
    await kafka.ensure_topics(settings.kafka_bootstrap, [(settings.raw_topic, 1), (settings.dlq_topic, 1)])
    await publish(settings.kafka_bootstrap, settings.raw_topic, [feed], progress=False)

    worker = _SecondCommitFails(settings, pool)
    try:
        await asyncio.wait_for(worker.run(asyncio.Event()), 60)
        raise AssertionError("the worker kept running after a failed commit")
    except RuntimeError as exc:
        assert str(exc) == "injected commit failure"
    first_commit = await scalar(pool, CONSUMED_SQL, settings.consumer_group)
    assert 0 < first_commit < len(urls)
    assert await scalar(pool, RECEIVED_SQL) == first_commit, "only the first commit's records are in the log"

    async with running_daemon(settings):
        await wait_until(lambda: reaches(pool, len(urls), RECEIVED_SQL), what="every message after the restart")
        await wait_until(lambda: reaches(pool, len(urls), CONSUMED_SQL, settings.consumer_group), what="offsets")
    async with pool.acquire() as conn:
        received = await conn.fetch(
            "SELECT payload->'message'->>'url' AS url FROM newsflow.events WHERE type = 'ArticleReceived'"
        )
    assert sorted(r["url"] for r in received) == sorted(urls)


async def test_a_slow_message_holds_back_only_its_own_partition(settings: Settings, pool: asyncpg.Pool) -> None:
    """Messages commit per partition in offset order, not per fetched batch: a page stuck in cleaning
    (here until the stage timeout) does not keep the other partition's messages out of the log."""
    settings = settings.model_copy(update={"stage_timeout_s": 6.0, "raw_partitions": 2})
    await kafka.ensure_topics(settings.kafka_bootstrap, [(settings.raw_topic, 2), (settings.dlq_topic, 1)])
    producer = kafka.make_producer(settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(settings.raw_topic, BAD_LINES["cleaning_timeout"], key=b"slow", partition=0)
        for i in range(3):
            url = f"https://fast.example/{i}"
            body = json.dumps(message(url, f"A short report number {i} about the harbour strike.")).encode()
            await producer.send_and_wait(settings.raw_topic, body, key=url.encode(), partition=1)
    finally:
        await producer.stop()
    async with running_daemon(settings):
        await wait_until(lambda: reaches(pool, 3, RECEIVED_SQL), what="the fast partition's articles")
        await wait_until(
            lambda: reaches(pool, 1, "SELECT count(*) FROM newsflow.events WHERE type = 'ArticleRejected'"),
            what="the slow page's rejection",
        )
    async with pool.acquire() as conn:
        received = await conn.fetch("SELECT position FROM newsflow.events WHERE type = 'ArticleReceived'")
        rejected = await conn.fetchrow("SELECT position, payload FROM newsflow.events WHERE type = 'ArticleRejected'")
    assert rejected["payload"]["reason"] == "cleaning_timeout"
    assert max(r["position"] for r in received) < rejected["position"], "partition 1 committed while 0 waited"


def test_records_fetched_before_their_partition_was_sought_are_left_for_the_refetch() -> None:
    """getmany() returned them before the rebalance seek; after the seek the consumer fetches them again.

    Seen on `make run`: the first fetch raced the first assignment, its records were applied, the
    refetched copies then looked like offsets going backwards (a spurious `offsets.regressed`).
    """
    records = [SourceRecord("t", p, 0, None, b"{}") for p in (0, 1, 2)]
    expected = {0: 0, 1: 0}  # partition 2 is not (or no longer) this worker's
    positioned = {0: 1, 1: 2}  # partition 1 was sought in round 2, after this fetch returned (round 1)
    assert [r.partition for r in sought_before(records, expected, positioned, fetched_in=1)] == [0]
    assert [r.partition for r in sought_before(records, expected, positioned, fetched_in=2)] == [0, 1]
    assert sought_before(records, expected, {}, fetched_in=0) == []
