"""What an operator wants to see: consumer lag, reader positions, event counts, rejections."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from newsflow.adapters import postgres
from newsflow.app import health
from newsflow.readside import story_clusterer
from newsflow.settings import Settings


async def kafka_log_ends(settings: Settings) -> dict[int, int] | None:
    """End offset per partition of the raw topic, or None when the broker is unreachable."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    try:
        await consumer.start()
    except (KafkaError, OSError):
        return None
    try:
        partitions = consumer.partitions_for_topic(settings.raw_topic) or set()
        if not partitions:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(settings.raw_topic) or set()
        tps = [TopicPartition(settings.raw_topic, p) for p in sorted(partitions)]
        ends = await consumer.end_offsets(tps) if tps else {}
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def gather(settings: Settings) -> dict[str, Any]:
    """Everything ``newsflow status`` shows; the daemon's own health even while PostgreSQL is down."""
    try:
        conn = await postgres.connect(settings.writer_url())
    except Exception as exc:
        if not postgres.is_unavailable(exc):
            raise
        data: dict[str, Any] = {
            "database_reachable": False,
            "broker_reachable": await kafka_log_ends(settings) is not None,
        }
    else:
        try:
            data = {"database_reachable": True, **await collect(settings, conn)}
        finally:
            await conn.close()
    snapshots = health.read_all(settings.state_dir)
    data["daemon"] = health.summary(snapshots, data["broker_reachable"], data["database_reachable"])
    return data


async def collect(settings: Settings, conn: asyncpg.Connection) -> dict[str, Any]:
    head = await postgres.head_position(conn)
    counts = {
        r["type"]: r["n"]
        for r in await conn.fetch("SELECT type, count(*) AS n FROM newsflow.events GROUP BY type ORDER BY type")
    }
    readers = {
        r["name"]: {
            "position": r["position"],
            "behind": head - r["position"],
            "updated_at": r["updated_at"].isoformat(),
        }
        for r in await conn.fetch("SELECT name, position, updated_at FROM newsflow.checkpoints ORDER BY name")
    }
    stories = await conn.fetchval("SELECT count(*) FROM projection.stories")
    snapshot = await conn.fetchrow(
        "SELECT position, articles, length(state) AS bytes, taken_at FROM newsflow.reader_snapshots WHERE name = $1",
        story_clusterer.READER,
    )
    stored = await postgres.load_offsets(conn, settings.consumer_group, settings.raw_topic)
    ends = await kafka_log_ends(settings)
    partitions = sorted(set(stored) | set(ends or {}))
    lag = {
        str(p): {
            "stored_offset": stored[p]["next_offset"] if p in stored else None,
            "log_end": (ends or {}).get(p),
            "lag": ((ends or {}).get(p, 0) - (stored[p]["next_offset"] if p in stored else 0))
            if ends is not None
            else None,
        }
        for p in partitions
    }
    return {
        "topic": settings.raw_topic,
        "consumer_group": settings.consumer_group,
        "broker_reachable": ends is not None,
        "consumer_lag": lag,
        "total_lag": sum(v["lag"] or 0 for v in lag.values()) if ends is not None else None,
        "log_head_position": head,
        "readers": readers,
        "events_by_type": counts,
        "rejected": counts.get("ArticleRejected", 0),
        "stories": stories,
        "clusterer_snapshot": {
            "position": snapshot["position"],
            "articles": snapshot["articles"],
            "bytes": snapshot["bytes"],
            "taken_at": snapshot["taken_at"].isoformat(),
        }
        if snapshot
        else None,
    }


def render(status: dict[str, Any]) -> str:
    lines = health.render(status["daemon"])
    if not status["database_reachable"]:
        lines.append("PostgreSQL unreachable: offsets, readers and counts unknown")
        return "\n".join(lines)
    lines += [
        f"topic {status['topic']}  group {status['consumer_group']}"
        + ("" if status["broker_reachable"] else "  (broker unreachable: lag unknown)")
    ]
    lines.append("partition  stored_offset  log_end  lag")
    for p, v in status["consumer_lag"].items():
        lines.append(f"{p:>9}  {v['stored_offset']!s:>13}  {v['log_end']!s:>7}  {v['lag']!s:>3}")
    lines.append(f"event log head: {status['log_head_position']}")
    for name, r in status["readers"].items():
        lines.append(f"reader {name}: position {r['position']} ({r['behind']} behind)")
    width = max((len(t) for t in status["events_by_type"]), default=0)
    for t, n in status["events_by_type"].items():
        lines.append(f"{t:<{width}}  {n}")
    lines.append(f"rejected: {status['rejected']}")
    lines.append(f"stories: {status['stories']}")
    snap = status["clusterer_snapshot"]
    if snap:
        lines.append(
            f"clusterer snapshot: position {snap['position']}, {snap['articles']} articles, {snap['bytes']} bytes"
        )
    return "\n".join(lines)
