"""What real scrapers send: librdkafka (confluent-kafka) batches, compressed with every Kafka codec."""

from __future__ import annotations

import json

import asyncpg
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Producer

from conftest import reaches, running_daemon, scalar, wait_until
from newsflow.adapters import kafka
from newsflow.settings import Settings

CODECS = ("gzip", "snappy", "lz4", "zstd")
PER_CODEC = 12
BAD = {b"{not json": "invalid_json", b'{"url": "https://x.example/missing"}': "missing_field"}


def article(codec: str, i: int) -> bytes:
    body = f"Dockworkers in port number {i} ended their strike after talks, the {codec} wire reported on Monday."
    message = {
        "url": f"https://{codec}.example/{i}",
        "source": f"{codec.title()} Wire",
        "fetched_at": "2022-09-15T10:00:00+00:00",
        "title": f"Port {i} strike ends",
        "text": body,
    }
    return json.dumps(message).encode()


def produce_with_librdkafka(settings: Settings) -> None:
    """Each codec in its own producer, lingering so records travel in compressed batches of several."""
    for codec in CODECS:
        producer = Producer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "compression.type": codec,
                "linger.ms": 200,
                "batch.num.messages": 100,
                "enable.idempotence": False,
                "acks": "all",
            }
        )
        for i in range(PER_CODEC):
            key = None if i % 3 == 0 else f"https://{codec}.example/{i}".encode()
            headers = [("scraper", b"test-scraper"), ("codec", codec.encode())]
            producer.produce(settings.raw_topic, article(codec, i), key=key, headers=headers, partition=i % 2)
        for raw in BAD:
            producer.produce(settings.raw_topic, raw, headers=[("codec", codec.encode())], partition=0)
        assert producer.flush(30) == 0, f"{codec}: records left unsent"


async def dead_letters(settings: Settings, expected: int) -> list[dict[str, str]]:
    consumer = AIOKafkaConsumer(
        settings.dlq_topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        seen: list[dict[str, str]] = []
        while len(seen) < expected:
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, f"only {len(seen)} of {expected} dead letters arrived"
            for records in batch.values():
                seen += [{k: v.decode() for k, v in r.headers} for r in records]
        return seen
    finally:
        await consumer.stop()


async def test_compressed_batches_from_librdkafka_arrive_once_and_bad_records_are_rejected(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    settings = settings.model_copy(update={"raw_partitions": 2})
    await kafka.ensure_topics(settings.kafka_bootstrap, [(settings.raw_topic, 2), (settings.dlq_topic, 1)])
    produce_with_librdkafka(settings)
    good, bad = len(CODECS) * PER_CODEC, len(CODECS) * len(BAD)
    async with running_daemon(settings):
        received = "SELECT count(*) FROM newsflow.events WHERE type = 'ArticleReceived'"
        rejected = "SELECT count(*) FROM newsflow.events WHERE type = 'ArticleRejected'"
        await wait_until(lambda: reaches(pool, good, received), what="every article")
        await wait_until(lambda: reaches(pool, bad, rejected), what="every bad record rejected")
    async with pool.acquire() as conn:
        per_url = await conn.fetch(
            "SELECT payload->'message'->>'url' AS url, count(*) AS n FROM newsflow.events"
            " WHERE type = 'ArticleReceived' GROUP BY 1"
        )
        reasons = await conn.fetch(
            "SELECT payload->>'reason' AS reason, count(*) AS n FROM newsflow.events"
            " WHERE type = 'ArticleRejected' GROUP BY 1"
        )
    assert sorted(r["url"] for r in per_url) == sorted(
        f"https://{c}.example/{i}" for c in CODECS for i in range(PER_CODEC)
    )
    assert {r["n"] for r in per_url} == {1}, "no article twice"
    assert {r["reason"]: r["n"] for r in reasons} == {reason: len(CODECS) for reason in BAD.values()}
    assert await scalar(pool, "SELECT coalesce(sum(next_offset), 0) FROM newsflow.consumer_offsets") == good + bad
    letters = await dead_letters(settings, bad)
    assert sorted(h["newsflow.error.reason"] for h in letters) == sorted(list(BAD.values()) * len(CODECS))
    assert all(h["newsflow.original.topic"] == settings.raw_topic for h in letters)
