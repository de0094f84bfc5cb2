"""What an operator wants to see: consumer lag, reader positions, event counts, rejections.

Lag is measured against the log the broker holds now. When the stored offsets
were reset because that log replaced another (``ConsumerOffsetsReset``), lag 0
does not mean nothing was missed: each such partition also shows how many
offsets of the lost log had been applied, and that whatever the lost log held
beyond them was never read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from newsflow.adapters import postgres
from newsflow.app import health
from newsflow.domain.identity import consumer_stream
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


LATEST_RESETS_SQL = """
SELECT DISTINCT ON (payload->>'partition') (payload->>'partition')::int AS partition, payload, recorded_at
FROM newsflow.events
WHERE type = 'ConsumerOffsetsReset' AND stream_id = $1 AND payload->>'topic' = $2
ORDER BY payload->>'partition', position DESC
"""

RESET_HEADLINES = {
    "broker_changed": "broker replaced",
    "beyond_log_end": "log emptied or recreated",
    "before_log_start": "records removed before they were read",
}


async def offsets_resets(conn: asyncpg.Connection, settings: Settings, stored: dict[int, Any]) -> dict[int, Any]:
    """Per partition, the reset that started the log its stored offset counts in, if one did.

    The latest reset of a partition applies while the stored offset still belongs to
    the broker incarnation the reset moved to (same cluster id).
    """
    rows = await conn.fetch(LATEST_RESETS_SQL, consumer_stream(settings.consumer_group), settings.raw_topic)
    resets = {}
    for r in rows:
        p, payload = r["partition"], r["payload"]
        if p in stored and stored[p]["cluster_id"] == payload["cluster_id"]:
            resets[p] = {
                "at": r["recorded_at"].isoformat(),
                "reason": payload["reason"],
                "applied_from_lost_log": payload["stored_offset"],
                "lost_cluster_id": payload["stored_cluster_id"],
                "cluster_id": payload["cluster_id"],
                "log_start": payload["log_start"],
                "new_offset": payload["new_offset"],
            }
    return resets


def reset_summaries(lag: dict[str, Any]) -> list[dict[str, Any]]:
    """The partitions' resets grouped by the event that caused them (reason and the two logs), oldest first.

    ``applied_from_lost_log`` per partition and in all; ``never_read`` only where it is
    known: the records retention removed between the stored offset and the log start.
    """
    groups: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}
    for p, v in lag.items():
        reset = v.get("reset")
        if reset is None:
            continue
        key = (reset["reason"], reset["lost_cluster_id"], reset["cluster_id"])
        group = groups.setdefault(
            key, {"at": reset["at"], "reason": reset["reason"], "lost_cluster_id": reset["lost_cluster_id"]}
        )
        group["at"] = min(group["at"], reset["at"])
        group.setdefault("partitions", {})[p] = reset["applied_from_lost_log"]
        if reset["reason"] == "before_log_start":
            group.setdefault("never_read", {})[p] = reset["log_start"] - reset["applied_from_lost_log"]
    summaries = sorted(groups.values(), key=lambda g: g["at"])
    for g in summaries:
        g["applied_from_lost_log"] = sum(g["partitions"].values())
    return summaries


def _by_partition(counts: dict[str, int]) -> str:
    return ", ".join(f"{p}: {n}" for p, n in counts.items())


def _reset_line(summary: dict[str, Any]) -> str:
    at = datetime.fromisoformat(summary["at"]).strftime("%Y-%m-%d %H:%M:%S %Z")
    headline = f"{RESET_HEADLINES.get(summary['reason'], summary['reason'])} at {at}"
    if "never_read" in summary:
        lost = summary["never_read"]
        return f"{headline}: {sum(lost.values())} records never applied (by partition {_by_partition(lost)})"
    return (
        f"{headline}: {summary['applied_from_lost_log']} offsets applied from the old log"
        f" (by partition {_by_partition(summary['partitions'])}); what it held beyond was lost"
    )


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
    for p, reset in (await offsets_resets(conn, settings, stored)).items():
        lag[str(p)]["reset"] = reset
    return {
        "topic": settings.raw_topic,
        "consumer_group": settings.consumer_group,
        "broker_reachable": ends is not None,
        "consumer_lag": lag,
        "total_lag": sum(v["lag"] or 0 for v in lag.values()) if ends is not None else None,
        "offsets_resets": reset_summaries(lag),
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
        note = "  (after a reset, see below)" if "reset" in v else ""
        lines.append(f"{p:>9}  {v['stored_offset']!s:>13}  {v['log_end']!s:>7}  {v['lag']!s:>3}{note}")
    lines.extend(_reset_line(summary) for summary in status["offsets_resets"])
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
