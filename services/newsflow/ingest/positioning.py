"""Where each assigned partition resumes, and which fetched records are still this worker's to apply.

On every assignment the consumer seeks to the offset stored in PostgreSQL (or
resets safely when the broker no longer holds that log, and records why as a
``ConsumerOffsetsReset`` event). Offsets that go backwards while running mean the
broker's log was replaced under us; those partitions are positioned again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from newsflow import process_state
from newsflow.adapters import kafka, metrics, postgres
from newsflow.domain.events import ConsumerOffsetsReset, NewEvent
from newsflow.domain.identity import consumer_stream
from newsflow.domain.offsets import decide_resume
from newsflow.domain.stages import SourceRecord
from newsflow.settings import Settings

log = structlog.get_logger(__name__)


def sought_before(
    records: Sequence[SourceRecord], expected: dict[int, int], positioned: dict[int, int], fetched_in: int
) -> list[SourceRecord]:
    """The records of partitions this worker holds that were fetched after the partition's latest seek.

    getmany() can return records just before the rebalance callback seeks their
    partition; they wait for the positioning lock, and by then the seek has reset
    the consumer, which fetches them again. Applying the early copy as well would
    trip the offsets-went-backwards check, and if the consumer's own reset had
    started elsewhere than the stored offset (``start_from=latest``), move the
    stored offset over records never applied.
    """
    return [r for r in records if r.partition in expected and positioned.get(r.partition, fetched_in + 1) <= fetched_in]


class Positioner:
    """The partitions this worker holds, the next offset it expects in each, and the seeks that set them."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        worker_id: str,
        drain: Callable[[], Awaitable[None]],
        on_member: Callable[[str | None], None] | None = None,
    ) -> None:
        """``on_member`` hears the consumer's group member id after every assignment."""
        self.settings = settings
        self.on_member = on_member
        self.pool = pool
        self.worker_id = worker_id
        self._drain = drain
        self.cluster_id: str | None = None
        # Next offset expected per partition; a record below it means the log was replaced.
        self.expected: dict[int, int] = {}
        # Positioning rounds, and the round in which each partition was last sought: records that a
        # fetch returned before their partition's seek are from before it.
        self.round = 0
        self._positioned: dict[int, int] = {}
        # Assignment callbacks run in aiokafka's coordinator task, concurrently with getmany():
        # positioning and batch handling never interleave.
        self.lock = asyncio.Lock()
        # An assignment that could not be positioned (aiokafka only logs a callback's error): the
        # worker must stop rather than fetch from wherever the consumer's own reset put it.
        self.failure: BaseException | None = None

    def listener(self, consumer: AIOKafkaConsumer) -> ConsumerRebalanceListener:
        return _Rebalance(self, consumer)

    def fresh(self, records: Sequence[SourceRecord], fetched_in: int) -> list[SourceRecord]:
        """Of the records a fetch in round ``fetched_in`` returned, those still to apply (call under ``lock``)."""
        return sought_before(records, self.expected, self._positioned, fetched_in)

    def split_regressed(self, records: Sequence[SourceRecord]) -> tuple[set[int], list[SourceRecord]]:
        """Partitions whose offsets went backwards, and the records of all other partitions.

        Offsets going backwards mean the broker's log was replaced under us (e.g.
        restarted empty): the consumer's own reset would silently re-read from 0
        while PostgreSQL still holds higher offsets. Only those partitions are
        re-positioned and refetched; the other partitions' records must still be
        applied, because the consumer has already moved past them.
        """
        regressed = {
            r.partition for r in records if r.partition in self.expected and r.offset < self.expected[r.partition]
        }
        return regressed, [r for r in records if r.partition not in regressed]

    def advance(self, records: Sequence[SourceRecord]) -> None:
        """Records scheduled: the next fetch's regression check compares against them."""
        for rec in records:
            self.expected[rec.partition] = max(self.expected.get(rec.partition, 0), rec.offset + 1)

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self.expected.pop(tp.partition, None)
        self._announce()

    def _announce(self) -> None:
        """The partitions this process owns now, for its health snapshot and the metrics."""
        process_state.assigned(self.expected)
        metrics.partitions_assigned(len(self.expected))

    async def position(self, consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]) -> None:
        """Seek each partition to its stored offset, or reset it safely (and record why)."""
        assigned = sorted(partitions, key=lambda t: t.partition)
        if assigned:
            async with self.lock:
                await self.position_locked(consumer, assigned)

    async def position_locked(self, consumer: AIOKafkaConsumer, assigned: list[TopicPartition]) -> None:
        """``position`` with ``lock`` held; records in flight commit first, so the stored offsets are current.

        A record in flight for a partition that has meanwhile moved to another
        worker is fenced at its commit (records below the stored offsets are
        skipped), so revocation itself need not wait for it.
        """
        await self._drain()
        s = self.settings
        self.cluster_id = await kafka.broker_cluster_id(s.kafka_bootstrap)
        starts = await consumer.beginning_offsets(assigned)
        ends = await consumer.end_offsets(assigned)
        async with self.pool.acquire() as conn, conn.transaction():
            stored = await postgres.load_offsets(conn, s.consumer_group, s.raw_topic, lock=True)
            resets: list[NewEvent] = []
            rewrite: dict[int, int] = {}
            for tp in assigned:
                row = stored.get(tp.partition)
                stored_offset = row["next_offset"] if row else None
                stored_cluster = row["cluster_id"] if row else None
                decision = decide_resume(
                    stored_offset, stored_cluster, self.cluster_id, starts[tp], ends[tp], s.start_from
                )
                consumer.seek(tp, decision.offset)
                self.expected[tp.partition] = decision.offset
                self._positioned[tp.partition] = self.round + 1
                if row is None or decision.reset_reason or stored_cluster != self.cluster_id:
                    rewrite[tp.partition] = decision.offset
                if decision.reset_reason and stored_offset is not None:
                    reset = ConsumerOffsetsReset(
                        group_id=s.consumer_group,
                        topic=s.raw_topic,
                        partition=tp.partition,
                        reason=decision.reset_reason,
                        stored_offset=stored_offset,
                        stored_cluster_id=stored_cluster,
                        cluster_id=self.cluster_id,
                        log_start=starts[tp],
                        log_end=ends[tp],
                        new_offset=decision.offset,
                    )
                    log.warning("offsets.reset", **reset.model_dump())
                    cause = {"causation": {"kind": "rebalance", "worker": self.worker_id}}
                    resets.append(NewEvent.of(consumer_stream(s.consumer_group), reset, cause))
            self.round += 1  # no await since the first seek: a fetch returned either before all or after all
            await postgres.append(conn, resets)
            await postgres.save_offsets(conn, s.consumer_group, s.raw_topic, rewrite, self.cluster_id)
        metrics.events_appended(resets)
        self._announce()
        log.info("partitions.assigned", positions=dict(sorted(self.expected.items())), cluster_id=self.cluster_id)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, positioner: Positioner, consumer: AIOKafkaConsumer) -> None:
        self.positioner = positioner
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.positioner.revoke(revoked)
        log.info("partitions.revoked", partitions=sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.positioner.on_member is not None:
            self.positioner.on_member(kafka.member_id(self.consumer))
        try:
            await self.positioner.position(self.consumer, assigned)
        except Exception as exc:  # noqa: BLE001  (the worker's fetch loop raises it)
            log.warning("partitions.unpositioned", partitions=sorted(tp.partition for tp in assigned), error=repr(exc))
            self.positioner.failure = exc
