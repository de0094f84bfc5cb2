"""Record batches the consumer cannot decode, sent for real to the broker: each becomes one rejection, never a stall."""

from __future__ import annotations

import hashlib
import json

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.poison_batches import PoisonRefused, damage, default_values, produce_poison
from conftest import RECEIVED_SQL, reaches, running_daemon, wait_until
from newsflow.adapters import kafka
from newsflow.settings import Settings

REJECTED_SQL = "SELECT count(*) FROM newsflow.events WHERE type = 'ArticleRejected'"


def article(partition: int, i: int) -> bytes:
    message = {
        "url": f"https://wire.example/p{partition}/{i}",
        "source": "Poison Wire",
        "fetched_at": "2022-09-15T10:00:00+00:00",
        "title": f"Harbour report {partition}-{i}",
        "text": f"The harbour on coast {partition} reopened its berth number {i} after storm repairs, officials said.",
    }
    return json.dumps(message).encode()


async def send_articles(producer: AIOKafkaProducer, topic: str, partition: int, numbers: range) -> None:
    for i in numbers:
        await producer.send_and_wait(topic, article(partition, i), partition=partition)


async def end_offsets(settings: Settings) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.raw_topic, p) for p in range(settings.raw_partitions)]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def test_undecodable_batches_become_rejections_and_every_good_article_arrives_once(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    settings = settings.model_copy(update={"raw_partitions": 2})
    bootstrap, topic = settings.kafka_bootstrap, settings.raw_topic
    await kafka.ensure_topics(bootstrap, [(topic, 2), (settings.dlq_topic, 1)])
    producer = kafka.make_producer(bootstrap)
    await producer.start()
    # Before the daemon starts, so its first fetches hold good records, the poison and good records in one response.
    poisons: dict[tuple[int, int], tuple[str, int, int]] = {}
    await send_articles(producer, topic, 0, range(0, 3))
    poisons[(0, 0)] = ("crc_mismatch", *await produce_poison(bootstrap, topic, 0, "crc_mismatch"))
    await send_articles(producer, topic, 0, range(3, 5))
    first, last = await produce_poison(bootstrap, topic, 0, "corrupt_compressed", codec="gzip")
    poisons[(0, 1)] = ("undecodable_batch", first, last)
    first, last = await produce_poison(bootstrap, topic, 0, "corrupt_compressed", codec="lz4")
    poisons[(0, 2)] = ("undecodable_batch", first, last)
    await send_articles(producer, topic, 0, range(5, 7))
    await send_articles(producer, topic, 1, range(0, 4))
    first, last = await produce_poison(bootstrap, topic, 1, "corrupt_compressed", codec="zstd")
    poisons[(1, 0)] = ("undecodable_batch", first, last)
    await send_articles(producer, topic, 1, range(4, 6))
    good = 7 + 6
    try:
        async with running_daemon(settings):
            await wait_until(lambda: reaches(pool, good, RECEIVED_SQL), what="every good article")
            await wait_until(lambda: reaches(pool, len(poisons), REJECTED_SQL), what="one rejection per batch")
            # A poison arriving while the daemon runs, then more articles: it is still consuming.
            first, last = await produce_poison(bootstrap, topic, 1, "crc_mismatch")
            poisons[(1, 1)] = ("crc_mismatch", first, last)
            await send_articles(producer, topic, 1, range(6, 8))
            await send_articles(producer, topic, 0, range(7, 8))
            good += 3
            await wait_until(lambda: reaches(pool, good, RECEIVED_SQL), what="articles after a poison while running")
            await wait_until(lambda: reaches(pool, len(poisons), REJECTED_SQL), what="the later poison rejected")
            ends = await end_offsets(settings)
            stored_sql = "SELECT next_offset FROM newsflow.consumer_offsets WHERE group_id = $1 AND partition = $2"
            for partition, end in ends.items():
                await wait_until(
                    lambda p=partition, e=end: reaches(pool, e, stored_sql, settings.consumer_group, p),
                    what=f"stored offset of partition {partition} at the log end",
                )
    finally:
        await producer.stop()

    async with pool.acquire() as conn:
        urls = await conn.fetch(
            "SELECT payload->'message'->>'url' AS url, count(*) AS n FROM newsflow.events"
            " WHERE type = 'ArticleReceived' GROUP BY 1"
        )
        rejections = await conn.fetch(
            "SELECT payload, metadata->'causation' AS cause FROM newsflow.events WHERE type = 'ArticleRejected'"
        )
    expected_urls = [f"https://wire.example/p0/{i}" for i in range(8)] + [
        f"https://wire.example/p1/{i}" for i in range(8)
    ]
    assert sorted(r["url"] for r in urls) == sorted(expected_urls)
    assert {r["n"] for r in urls} == {1}, "no article twice"
    found = sorted(
        (r["cause"]["partition"], r["cause"]["offset"], r["cause"]["last_offset"], r["payload"]["reason"])
        for r in rejections
    )
    assert found == sorted((p, first, last, reason) for (p, _), (reason, first, last) in poisons.items())
    for r in rejections:
        cause, payload = r["cause"], r["payload"]
        assert f"{topic}[{cause['partition']}] offsets {cause['offset']}..{cause['last_offset']}" in payload["detail"]
        assert "range from next_batch" in payload["detail"] or "range from batch_header" in payload["detail"]
        assert payload["raw_size"] > 0, "the batch's bytes are kept"
    letters = await dead_letters(settings, len(poisons))
    assert sorted(
        (int(h["newsflow.original.partition"]), int(h["newsflow.original.offset"]), h["newsflow.error.reason"])
        for h, _ in letters
    ) == sorted((p, first, reason) for (p, _), (reason, first, _) in poisons.items())
    assert all(int(h["newsflow.original.last_offset"]) >= int(h["newsflow.original.offset"]) for h, _ in letters), (
        "a rejected batch's dead letter names its last offset too"
    )
    digests = {r["payload"]["raw_sha256"] for r in rejections}
    assert {hashlib.sha256(value).hexdigest() for _, value in letters} == digests


async def dead_letters(settings: Settings, expected: int) -> list[tuple[dict[str, str], bytes]]:
    consumer = AIOKafkaConsumer(
        settings.dlq_topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        seen: list[tuple[dict[str, str], bytes]] = []
        while len(seen) < expected:
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, f"only {len(seen)} of {expected} dead letters arrived"
            for records in batch.values():
                seen += [({k: v.decode() for k, v in r.headers}, r.value or b"") for r in records]
        return seen
    finally:
        await consumer.stop()


async def test_the_embedded_broker_refuses_a_batch_with_an_unknown_codec(settings: Settings) -> None:
    """tansu validates the codec on produce, so an unknown codec cannot reach a consumer from this broker."""
    await kafka.ensure_topics(settings.kafka_bootstrap, [(settings.raw_topic, 1)])
    for codec_id in (5, 6, 7):
        assert damage("unknown_codec", default_values(), unknown_codec_id=codec_id)[22] & 0x07 == codec_id
    with pytest.raises(PoisonRefused, match="unknown_codec"):
        await produce_poison(settings.kafka_bootstrap, settings.raw_topic, 0, "unknown_codec")
