"""The pipeline worker: Kafka records in, events and offsets out in one PostgreSQL transaction.

Exactly-once effect: the offsets a transaction consumed are written with the
events they produced, and on every assignment the consumer seeks to the offsets
stored in PostgreSQL (Kafka-side commits are never used; ``positioning``).
Inside the transaction the stored offsets are re-read under a row lock and
records below them are skipped, which fences off a worker that lost its
partitions in a rebalance but still finishes a batch. Records overlap through
the stages and commit in each partition's order (``in_flight``).

A database outage is waited out with the consumer kept in its group (``wait_out``):
leaving and rejoining would cost a rebalance round, seconds on every outage.
What was in flight is dropped, the partitions pause, and once PostgreSQL answers
they are positioned again at the stored offsets, as after an assignment.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from newsflow import process_state
from newsflow.adapters import chrome_store, dedup_store, kafka, metrics, postgres
from newsflow.domain import stages
from newsflow.domain.cleaning import learned_chrome
from newsflow.domain.contract import RawArticleV1, Rejection
from newsflow.domain.events import ArticleDedupKeyed, NewEvent
from newsflow.domain.offsets import already_applied
from newsflow.domain.revisions import StoredVersion, VersionLedger, version_events
from newsflow.domain.stages import Accepted, Outcome, Rejected, SourceRecord
from newsflow.ingest import undecodable
from newsflow.ingest.entity_plan import EntityPlanner
from newsflow.ingest.in_flight import InFlight, Pending
from newsflow.ingest.positioning import Positioner
from newsflow.ingest.stage_runner import StageCrashed, StageRunner, StageTimeout
from newsflow.settings import Settings

log = structlog.get_logger(__name__)


def _decode_batch(records: Sequence[SourceRecord]) -> list[RawArticleV1 | Rejection]:
    return [stages.decode_record(r) for r in records]


def _applied(record: SourceRecord, stored: Mapping[int, Any]) -> bool:
    row = stored.get(record.partition)
    if row is None:
        return False
    return already_applied(record.offset, record.cluster_id, row["next_offset"], row["cluster_id"])


WaitOut = Callable[[BaseException], Awaitable[None]]

PAUSED_POLL_MS = 500  # while waiting out an outage the consumer still polls, so the group keeps it


class PipelineWorker:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        worker_id: str | None = None,
        runner: StageRunner | None = None,
        wait_out: WaitOut | None = None,
        on_member: Callable[[str | None], None] | None = None,
    ) -> None:
        """``runner``: stage workers that outlive this worker (the daemon keeps them warm across outages).

        ``wait_out(error)`` returns once the database answers again (or the worker is
        to stop); without it a database outage ends ``run`` with the error.
        ``on_member`` hears the consumer's group member id after every assignment.
        """
        self.settings = settings
        self.wait_out = wait_out
        self._unpositioned = False
        self.pool = pool
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.consumer: AIOKafkaConsumer | None = None
        self.producer = kafka.make_producer(
            settings.kafka_bootstrap, linger_ms=5, max_request_size=kafka.DEAD_LETTER_MAX_BYTES + 64 * 1024
        )
        self._owns_runner = runner is None
        self.runner = runner or StageRunner.for_settings(settings)
        self.learned = learned_chrome.LearnedChrome()
        self.in_flight = InFlight(settings.max_in_flight, self._commit_ready)
        self.positioner = Positioner(settings, pool, self.worker_id, self.in_flight.drain, on_member)
        self.entities = EntityPlanner(pool, self.runner, fallback=settings.entity_fallback)
        # Records of a partition decide in offset order whether to run the entity model (each waits for
        # the one before it), so of two copies in one partition the earlier runs it; partitions are
        # independent, so a page stuck in cleaning holds back only its own partition.
        self._last_decided: dict[int, asyncio.Future[None]] = {}
        self.batches = 0

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        await kafka.ensure_topics(s.kafka_bootstrap, [(s.raw_topic, s.raw_partitions), (s.dlq_topic, 1)])
        self.consumer = consumer = kafka.make_consumer(s, client_id=self.worker_id)
        await self.producer.start()
        await consumer.start()
        self.in_flight.start()
        process_state.assigned(())
        consumer.subscribe([s.raw_topic], listener=self.positioner.listener(consumer))
        try:
            # The group assigns partitions (seconds of rebalance) while the stage workers warm up.
            await self.runner.start()
            log.info("pipeline.started", worker=self.worker_id, topic=s.raw_topic, group=s.consumer_group)
            while not stop.is_set():
                process_state.tick("pipeline")
                try:
                    await self._step(consumer)
                except Exception as exc:
                    if self.wait_out is None or not postgres.is_unavailable(exc) or stop.is_set():
                        raise
                    await self._wait_out(consumer, exc, stop)
            await self.in_flight.drain()
        finally:
            process_state.loop_ended("pipeline")
            process_state.assigned(None)
            metrics.partitions_assigned(0)
            await self.in_flight.close()
            await consumer.stop()
            await self.producer.stop()
            if self._owns_runner:
                self.runner.close()
            log.info("pipeline.stopped", worker=self.worker_id, batches=self.batches)

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        """One fetch, staged; after an outage, the partitions are positioned and resumed first."""
        s = self.settings
        if self._unpositioned:
            await self._resume(consumer)
        room = await self.in_flight.room()
        try:
            batch = await consumer.getmany(timeout_ms=s.batch_timeout_ms, max_records=min(room, s.batch_max_records))
        except Exception as exc:
            failed = undecodable.failed_partition(exc)
            if failed is None:
                raise
            await self._skip_undecodable(consumer, failed, exc)
            return
        if self.positioner.failure is not None:
            raise self.positioner.failure
        fetched_in = self.positioner.round
        records = [
            SourceRecord(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp, self.positioner.cluster_id)
            for tp in sorted(batch, key=lambda t: t.partition)
            for m in batch[tp]
        ]
        if not records:
            return
        metrics.consumed(len(records))
        async with self.positioner.lock:
            # A seek while these records waited for the lock makes the consumer fetch them again.
            records = self.positioner.fresh(records, fetched_in)
            if records:
                await self._apply(consumer, records)

    async def _wait_out(self, consumer: AIOKafkaConsumer, error: BaseException, stop: asyncio.Event) -> None:
        """Drop what is in flight and poll with every partition paused until the database answers.

        Records fetched meanwhile (a partition assigned during the outage is not
        paused yet) are dropped too: every partition is sought to its stored
        offset before fetching resumes.
        """
        assert self.wait_out is not None
        await self.in_flight.reset()
        self.entities.reset()
        self._last_decided.clear()
        self._unpositioned = True
        waiting = asyncio.ensure_future(self.wait_out(error))
        try:
            while not waiting.done():
                process_state.tick("pipeline")
                consumer.pause(*consumer.assignment())
                try:
                    await consumer.getmany(timeout_ms=PAUSED_POLL_MS)
                except Exception as exc:
                    if undecodable.failed_partition(exc) is None:
                        raise
            waiting.result()
        finally:
            waiting.cancel()
        log.info(
            "pipeline.resuming", worker=self.worker_id, partitions=len(consumer.assignment()), stopping=stop.is_set()
        )

    async def _resume(self, consumer: AIOKafkaConsumer) -> None:
        """Position every assigned partition at its stored offset and fetch again (after an outage)."""
        async with self.positioner.lock:
            self.positioner.failure = None
            assigned = sorted(consumer.assignment(), key=lambda t: t.partition)
            if assigned:
                await self.positioner.position_locked(consumer, assigned)
            consumer.resume(*assigned)
        self._unpositioned = False

    async def _apply(self, consumer: AIOKafkaConsumer, records: Sequence[SourceRecord]) -> None:
        regressed, keep = self.positioner.split_regressed(records)
        if regressed:
            log.warning("offsets.regressed", partitions=sorted(regressed))
            partitions = [TopicPartition(self.settings.raw_topic, p) for p in sorted(regressed)]
            await self.positioner.position_locked(consumer, partitions)
        if keep:
            self.positioner.advance(keep)
            for pending in await self._stage(keep):
                self.in_flight.add(pending)

    async def _skip_undecodable(self, consumer: AIOKafkaConsumer, tp: TopicPartition, exc: Exception) -> None:
        """A fetch of ``tp`` could not be decoded: apply what precedes the damaged batch, reject it, move past it."""
        async with self.positioner.lock:
            start = self.positioner.expected.get(tp.partition)
            if start is None:
                return  # revoked meanwhile: its new owner meets the batch
            located = await self._reject_undecodable(consumer, tp, start, exc)
        if not located:
            await asyncio.sleep(1.0)  # outside the lock: rebalances go on while the read is retried

    async def _reject_undecodable(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, exc: Exception
    ) -> bool:
        """``_skip_undecodable`` under the positioning lock; False if a raw read found nothing to move on with."""
        # The failed getmany() may have drained other partitions and dropped their records.
        undecodable.rewind(consumer, self.settings.raw_topic, self.positioner.expected)
        found = await undecodable.locate(self.settings.kafka_bootstrap, tp, start, self.positioner.cluster_id)
        if found.good:
            await self._apply(consumer, found.good)
        if found.poison is None:
            log.warning("fetch.undecodable_not_found", partition=tp.partition, offset=start, error=repr(exc))
        else:
            outcome = undecodable.rejected(tp, found.poison, exc, self.positioner.cluster_id, self.settings.dlq_topic)
            log.warning(
                "fetch.undecodable_batch",
                partition=tp.partition,
                first_offset=found.poison.first,
                last_offset=found.poison.end - 1,
                reason=found.poison.reason,
                range_from=found.poison.range_from,
                error=repr(exc)[:300],
            )
            self.positioner.advance([outcome.record])
            self.in_flight.add(Pending(self.in_flight.next_seq(), outcome.record, _done(outcome), {}))
        consumer.seek(tp, self.positioner.expected[tp.partition])
        return found.poison is not None or bool(found.good)

    async def handle_batch(self, records: Sequence[SourceRecord]) -> None:
        """Stage and commit ``records`` in one transaction (what the run loop does, without overlap)."""
        pending = await self._stage(records)
        await asyncio.gather(*(p.outcome for p in pending))
        await self._commit_ready(pending)

    async def _commit_ready(self, ready: Sequence[Pending]) -> None:
        outcomes = [p.outcome.result() for p in ready]
        await self._commit(outcomes, [p.ms for p in ready])
        self.entities.forget(outcomes)

    async def _stage(self, records: Sequence[SourceRecord]) -> list[Pending]:
        """Start the stages of every record not yet applied; each record's task ends with its outcome."""
        s = self.settings
        async with self.pool.acquire() as conn:
            done = await postgres.load_offsets(conn, s.consumer_group, s.raw_topic)
            learned = await chrome_store.refresh(conn, self.learned)
        if learned:
            log.info("chrome.learned", new_lines=learned, total=len(self.learned))
        records = [r for r in records if not _applied(r, done)]
        started = time.perf_counter()
        # CPU work off the event loop so heartbeats keep flowing; no transaction is open yet.
        decoded = await asyncio.to_thread(_decode_batch, records)
        decode_ms = (time.perf_counter() - started) * 1000 / max(1, len(records))
        pending = []
        for record, message in zip(records, decoded, strict=True):
            previous = self._last_decided.get(record.partition)
            decided = self._last_decided[record.partition] = asyncio.get_running_loop().create_future()
            ms = {"decode": decode_ms}
            task = asyncio.ensure_future(self._process(record, message, previous, decided, ms))
            pending.append(Pending(self.in_flight.next_seq(), record, task, ms))
        return pending

    async def _process(
        self,
        record: SourceRecord,
        message: RawArticleV1 | Rejection,
        previous: asyncio.Future[None] | None,
        decided: asyncio.Future[None],
        ms: dict[str, float],
    ) -> Outcome:
        """Clean, then (in the partition's order) choose how to get the entities, then wait for them."""
        started = time.perf_counter()
        try:
            o = await self._clean(record, message)
            ms["clean"] = (time.perf_counter() - started) * 1000
            if previous is not None:
                await previous
            entities_of = await self.entities.plan(o)
        finally:
            decided.set_result(None)
        started = time.perf_counter()
        o = await entities_of
        ms["entities"] = (time.perf_counter() - started) * 1000
        ms["ready_at"] = time.perf_counter()
        return o

    async def _clean(self, record: SourceRecord, decoded: RawArticleV1 | Rejection) -> Outcome:
        """The cleaning stage in a bounded worker; whatever goes wrong becomes a rejection, never a stall."""
        dlq = self.settings.dlq_topic
        if isinstance(decoded, Rejection):
            return stages.reject(record, decoded, dlq)
        learned = self.learned.for_source(decoded.source)
        try:
            return await self.runner.run(stages.clean_record, record, decoded, learned, dlq)
        except StageTimeout as exc:
            return stages.reject(record, Rejection("cleaning_timeout", str(exc)), dlq)
        except StageCrashed as exc:
            return stages.reject(record, Rejection("cleaning_crashed", str(exc)), dlq)
        except Exception as exc:  # a bug in stage code must not stall the partition: keep the message, say why
            log.exception("stage.failed", topic=record.topic, partition=record.partition, offset=record.offset)
            return stages.reject(record, Rejection("cleaning_crashed", f"{type(exc).__name__}: {exc}"), dlq)

    async def _commit(self, outcomes: Sequence[Outcome], timings: Sequence[dict[str, float]]) -> None:
        s = self.settings
        started = time.perf_counter()
        rejected = [o for o in outcomes if isinstance(o, Rejected)]
        if rejected:
            # Before the commit: a crash in between re-sends (at-least-once on the DLQ) but never loses one.
            await kafka.send_dead_letters(self.producer, s.dlq_topic, rejected)
            metrics.dead_letters_sent(rejected)
        async with self.pool.acquire() as conn, conn.transaction():
            transaction_started = time.perf_counter()
            await postgres.lock_appends(conn)
            stored = await postgres.load_offsets(conn, s.consumer_group, s.raw_topic, lock=True)
            to_apply = [o for o in outcomes if not _applied(o.record, stored)]
            events, new_articles = await self._events_for(conn, to_apply)
            events = [replace(e, metadata={**e.metadata, "worker": self.worker_id}) for e in events]
            await postgres.append(conn, events)
            await chrome_store.count_lines(conn, learned_chrome.increments(new_articles))
            next_offsets: dict[int, int] = {}
            for o in to_apply:
                next_offsets[o.record.partition] = max(next_offsets.get(o.record.partition, 0), o.record.offset + 1)
            await postgres.save_offsets(conn, s.consumer_group, s.raw_topic, next_offsets, self.positioner.cluster_id)
        metrics.batch_committed(outcomes, to_apply, events, timings, time.perf_counter() - transaction_started)
        self.batches += 1
        log.info(
            "batch.committed",
            records=len(outcomes),
            skipped_already_applied=len(outcomes) - len(to_apply),
            rejected=sum(isinstance(o, Rejected) for o in to_apply),
            events=len(events),
            offsets=next_offsets,
            ms=_batch_ms(timings, started),
        )

    async def _events_for(
        self, conn: asyncpg.Connection, outcomes: Sequence[Outcome]
    ) -> tuple[list[NewEvent], list[tuple[str, list[str]]]]:
        """Events to append, and the articles seen for the first time (they feed chrome learning)."""
        accepted = [o for o in outcomes if isinstance(o, Accepted)]
        stored = await postgres.article_versions(conn, [a.stream_id for a in accepted])
        ledger = VersionLedger({stream: StoredVersion(h, n) for stream, (h, n) in stored.items()})
        events: list[NewEvent] = []
        new_articles: list[tuple[str, list[str]]] = []
        for o in outcomes:
            where = {"topic": o.record.topic, "partition": o.record.partition, "offset": o.record.offset}
            if isinstance(o, Rejected):
                log.warning("record.rejected", **where, reason=o.rejection.reason, detail=o.rejection.detail[:300])
                events.append(o.event)
                continue
            verdict = ledger.judge(o.stream_id, o.content_sha256)
            if verdict.kind == "redelivery":
                log.info("record.duplicate_delivery", **where, article_id=str(o.article_id))
                continue
            if verdict.kind == "new":
                new_articles.append((o.source, o.chrome_candidates))
                log.debug("record.accepted", **where, article_id=str(o.article_id))
            else:
                log.info("record.revised", **where, article_id=str(o.article_id), revision=verdict.revision)
            events.extend(version_events(o, verdict, await self._dedup(conn, o)))
        return events, new_articles

    async def _dedup(self, conn: asyncpg.Connection, o: Accepted) -> list[NewEvent]:
        """Look the article up among everything committed before it, and register its keys."""
        keyed = o.event(ArticleDedupKeyed.event_type)
        event = await dedup_store.judge(conn, o.article_id, o.stream_id, o.url, o.dedup_key, keyed.event_id)
        return [event] if event else []


def _done(outcome: Outcome) -> asyncio.Task[Outcome]:
    """A task that has nothing left to do but return ``outcome`` (the committer waits on tasks)."""

    async def result() -> Outcome:
        return outcome

    return asyncio.ensure_future(result())


def _batch_ms(timings: Sequence[dict[str, float]], commit_started: float) -> dict[str, float]:
    """Stage times summed over a transaction's records (they overlap), and this transaction's commit time."""
    ms = {"decode": 0.0, "clean": 0.0, "entities": 0.0, "wait": 0.0}
    for t in timings:
        for phase in ("decode", "clean", "entities"):
            ms[phase] += t.get(phase, 0.0)
        ms["wait"] += max(0.0, commit_started - t.get("ready_at", commit_started)) * 1000
    out = {phase: round(v, 1) for phase, v in ms.items()}
    out["commit"] = round((time.perf_counter() - commit_started) * 1000, 1)
    return out
