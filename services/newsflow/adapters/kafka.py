"""Kafka adapter: topics, broker identity, the producer and consumer factories, and the dead-letter topic."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
    for_code,
)
from aiokafka.protocol.group import LeaveGroupRequest

from newsflow.domain.stages import Rejected
from newsflow.settings import Settings

MAX_HEADER_VALUE = 4096
# Dead letters may be as large as anything the raw topic let through (the contract's own limit is 8 MiB).
DEAD_LETTER_MAX_BYTES = 16 * 1024 * 1024
# A dead letter that still does not fit is sent as this much of a prefix; the whole record
# stays in the raw topic at the original topic/partition/offset named in its headers.
DEAD_LETTER_FALLBACK_BYTES = 1024 * 1024


async def ensure_topics(
    bootstrap: str, topics: Sequence[tuple[str, int]], max_message_bytes: int = DEAD_LETTER_MAX_BYTES
) -> None:
    """Create missing topics (name, partitions); existing ones are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, partitions, 1, topic_configs={"max.message.bytes": str(max_message_bytes)})
            for name, partitions in topics
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another starter created them first
                await admin.create_topics(missing)
    finally:
        await admin.close()


async def broker_cluster_id(bootstrap: str) -> str | None:
    """The broker's cluster id: it identifies one incarnation of an embedded (memory) broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_cluster()
        cluster_id = described.get("cluster_id")
        return str(cluster_id) if cluster_id is not None else None
    finally:
        await admin.close()


def make_producer(bootstrap: str, **kwargs: object) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas. Idempotence is off: the embedded broker lacks it."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, **kwargs)


SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000


def make_consumer(settings: Settings, client_id: str) -> AIOKafkaConsumer:
    """The pipeline's group consumer: positions come from PostgreSQL, so Kafka-side commits stay off.

    Fetch sizes admit the largest record the contract accepts (8 MiB) in one fetch.
    """
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.consumer_group,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset=settings.start_from,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        # A killed process's partitions move to the others after this long (Kafka's floor is 6 s by
        # default); heartbeats come from the event loop, which the stage workers keep free.
        session_timeout_ms=SESSION_TIMEOUT_MS,
        # A rebalance (a member joined, or one was removed for a dead process) is heard at the next beat.
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
    )


def member_id(consumer: AIOKafkaConsumer) -> str | None:
    """The consumer's member id in its group (aiokafka keeps it on its coordinator; there is no public accessor)."""
    coordinator = getattr(consumer, "_coordinator", None)
    member = getattr(coordinator, "member_id", None)
    return member if isinstance(member, str) and member else None


async def remove_member(bootstrap: str, group_id: str, member: str) -> None:
    """Remove the member of a process known to be dead from ``group_id`` (LeaveGroup on its behalf).

    Its partitions move at once instead of after the session timeout. Sent for a
    member that is still alive it costs one rebalance: the member is told at its
    next heartbeat and joins again.
    """
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        node = await client.coordinator_lookup(0, group_id)  # 0: a group coordinator, not a transaction one
        response = await client.send(node, LeaveGroupRequest(group_id, member))
        if response.error_code:
            raise for_code(response.error_code)(f"LeaveGroup for {member}")
    finally:
        await client.close()


def dead_letter_headers(rejected: Rejected) -> list[tuple[str, bytes]]:
    """Headers naming the rejection and the original record; a rejected batch adds its last offset."""
    rec = rejected.record
    cause = rejected.event.metadata.get("causation", {})
    fields = {
        "newsflow.error.reason": rejected.rejection.reason,
        "newsflow.error.detail": rejected.rejection.detail[:MAX_HEADER_VALUE],
        "newsflow.original.topic": rec.topic,
        "newsflow.original.partition": str(rec.partition),
        "newsflow.original.offset": str(cause.get("offset", rec.offset)),
        **({"newsflow.original.last_offset": str(cause["last_offset"])} if "last_offset" in cause else {}),
        "newsflow.original.cluster_id": rec.cluster_id or "",
        "newsflow.rejection.event_id": str(rejected.event.event_id),
        "newsflow.rejected_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    return [(k, v.encode("utf-8")) for k, v in fields.items()]


async def send_dead_letters(producer: AIOKafkaProducer, topic: str, rejected: Sequence[Rejected]) -> None:
    """Publish the original bytes of each rejected record and wait until the broker has them all."""
    for r in rejected:
        headers = dead_letter_headers(r)
        try:
            await producer.send_and_wait(topic, value=r.record.value, key=r.record.key, headers=headers)
        except (MessageSizeTooLargeError, RecordTooLargeError):
            value = (r.record.value or b"")[:DEAD_LETTER_FALLBACK_BYTES]
            headers.append(("newsflow.original.truncated_from", str(len(r.record.value or b"")).encode()))
            await producer.send_and_wait(topic, value=value, key=r.record.key, headers=headers)
