"""The pipeline worker: Kafka batch in, events and offsets out in one PostgreSQL transaction.

Exactly-once effect: the offsets a batch consumed are written in the same
transaction as the events it produced, and on every assignment the consumer
seeks to the offsets stored in PostgreSQL (Kafka-side commits are never used).
Inside the transaction the stored offsets are re-read under a row lock and
records below them are skipped, which fences off a worker that lost its
partitions in a rebalance but still finishes a batch.

Messages flow one by one, committed per partition in offset order: up to
``NEWSFLOW_MAX_IN_FLIGHT`` messages are being cleaned and enriched at once,
and the committer appends, in one transaction, every message whose stages are
done and whose earlier messages of the same partition are committed. So the
stage workers do not idle through fetches, look-ups and commits, and one slow
article holds back only the messages behind it in its own partition. Stored
offsets only ever move over a contiguous run of records whose events are in
the log; after a failed commit nothing else commits and the worker stops.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from newsflow.adapters import chrome_store, dedup_store, kafka, postgres
from newsflow.domain import entities, stages
from newsflow.domain.cleaning import learned_chrome
from newsflow.domain.contract import RawArticleV1, Rejection
from newsflow.domain.events import (
    ArticleCleaned,
    ArticleDedupKeyed,
    ArticleEntitiesExtracted,
    ArticleLanguageDetected,
    ArticleRevised,
    ConsumerOffsetsReset,
    NewEvent,
)
from newsflow.domain.offsets import decide_resume
from newsflow.domain.stages import Accepted, Outcome, Rejected, SourceRecord, clean_record, decode_record, reject
from newsflow.ingest import entity_plan
from newsflow.ingest.stage_runner import StageCrashed, StageRunner, StageTimeout
from newsflow.settings import Settings

log = structlog.get_logger(__name__)


def _decode_batch(records: Sequence[SourceRecord]) -> list[RawArticleV1 | Rejection]:
    return [decode_record(r) for r in records]


@dataclass
class _Pending:
    """One fetched record on its way through the stages; ``outcome`` finishes when all are done."""

    seq: int  # fetch order, across partitions: the order of a transaction's events
    record: SourceRecord
    outcome: asyncio.Task[Outcome]
    ms: dict[str, float]  # wall time per stage, for batch.committed


def sought_before(
    records: Sequence[SourceRecord], expected: Mapping[int, int], positioned: Mapping[int, int], fetched_in: int
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


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: PipelineWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self.worker.expected.pop(tp.partition, None)
        log.info("partitions.revoked", partitions=sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.worker.position_partitions(assigned)


class PipelineWorker:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, worker_id: str | None = None) -> None:
        self.settings = settings
        self.pool = pool
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.cluster_id: str | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.producer = kafka.make_producer(
            settings.kafka_bootstrap, linger_ms=5, max_request_size=kafka.DEAD_LETTER_MAX_BYTES + 64 * 1024
        )
        self.runner = StageRunner(settings.stage_workers, settings.stage_timeout_s, settings.stage_memory_mb)
        self.learned = learned_chrome.LearnedChrome()
        # Next offset this worker expects per partition; a record below it means the log was replaced.
        self.expected: dict[int, int] = {}
        # Positioning rounds, and the round in which each partition was last sought: records that a
        # fetch returned before their partition's seek are from before it (see run()).
        self._round = 0
        self._positioned: dict[int, int] = {}
        # Assignment callbacks run in aiokafka's coordinator task, concurrently with getmany():
        # positioning and batch handling never interleave.
        self._positioning = asyncio.Lock()
        self.batches = 0
        # Records fetched and not yet committed, per partition in offset order.
        self._pending: dict[int, deque[_Pending]] = {}
        self._in_flight = 0
        self._seq = 0
        # Set after every commit and whenever a record's stages finish; waiters re-check their condition.
        self._changed = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        # Records of a partition decide in offset order whether to run the entity model (each waits for
        # the one before it), so of two copies in one partition the earlier runs it; partitions are
        # independent, so a page stuck in cleaning holds back only its own partition.
        self._last_decided: dict[int, asyncio.Future[None]] = {}
        # Entity model runs not yet committed, by exact dedup key: a copy fetched meanwhile waits for
        # the run instead of paying for its own (the log cannot answer until the run's record commits).
        self._entity_runs: dict[str, tuple[uuid.UUID, asyncio.Future[NewEvent]]] = {}

    async def position_partitions(self, partitions: Iterable[TopicPartition]) -> None:
        """Seek each partition to the offset stored in PostgreSQL, or reset it safely (and record why)."""
        assigned = sorted(partitions, key=lambda t: t.partition)
        if not assigned:
            return
        async with self._positioning:
            await self._position(assigned)

    async def _position(self, assigned: list[TopicPartition]) -> None:
        """Seek to the stored offsets; records still in flight commit first, so the stored offsets are current.

        A record in flight for a partition that has meanwhile moved to another
        worker is fenced at its commit (records below the stored offsets are
        skipped), so revocation itself need not wait for it.
        """
        assert self.consumer is not None
        await self.drain()
        s = self.settings
        self.cluster_id = await kafka.broker_cluster_id(s.kafka_bootstrap)
        starts = await self.consumer.beginning_offsets(assigned)
        ends = await self.consumer.end_offsets(assigned)
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
                self.consumer.seek(tp, decision.offset)
                self.expected[tp.partition] = decision.offset
                self._positioned[tp.partition] = self._round + 1
                if row is None or decision.reset_reason or stored_cluster != self.cluster_id:
                    rewrite[tp.partition] = decision.offset
                if decision.reset_reason and row is not None:
                    reset = ConsumerOffsetsReset(
                        group_id=s.consumer_group,
                        topic=s.raw_topic,
                        partition=tp.partition,
                        reason=decision.reset_reason,
                        stored_offset=row["next_offset"],
                        stored_cluster_id=stored_cluster,
                        cluster_id=self.cluster_id,
                        log_start=starts[tp],
                        log_end=ends[tp],
                        new_offset=decision.offset,
                    )
                    log.warning("offsets.reset", **reset.model_dump())
                    resets.append(
                        NewEvent.of(
                            f"consumer-{s.consumer_group}",
                            reset,
                            {"causation": {"kind": "rebalance", "worker": self.worker_id}},
                        )
                    )
            self._round += 1  # no await since the first seek: a fetch returned either before all or after all
            await postgres.append(conn, resets)
            await postgres.save_offsets(conn, s.consumer_group, s.raw_topic, rewrite, self.cluster_id)
        log.info("partitions.assigned", positions=dict(sorted(self.expected.items())), cluster_id=self.cluster_id)

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        await kafka.ensure_topics(s.kafka_bootstrap, [(s.raw_topic, s.raw_partitions), (s.dlq_topic, 1)])
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.consumer_group,
            client_id=self.worker_id,
            enable_auto_commit=False,
            auto_offset_reset=s.start_from,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        await self.runner.start()
        await self.producer.start()
        await self.consumer.start()
        self._committer = asyncio.create_task(self._commit_loop(), name="pipeline-committer")
        self.consumer.subscribe([s.raw_topic], listener=_Rebalance(self))
        log.info("pipeline.started", worker=self.worker_id, topic=s.raw_topic, group=s.consumer_group)
        try:
            while not stop.is_set():
                room = await self._room()
                batch = await self.consumer.getmany(
                    timeout_ms=s.batch_timeout_ms, max_records=min(room, s.batch_max_records)
                )
                fetched_in = self._round
                records = [
                    SourceRecord(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp, self.cluster_id)
                    for tp in sorted(batch, key=lambda t: t.partition)
                    for m in batch[tp]
                ]
                if not records:
                    continue
                async with self._positioning:
                    # A seek while these records waited for the lock makes the consumer fetch them again.
                    records = sought_before(records, self.expected, self._positioned, fetched_in)
                    if records:
                        await self._apply(records)
            await self.drain()
        finally:
            self._committer.cancel()
            waiting = [p.outcome for queue in self._pending.values() for p in queue]
            for task in waiting:
                task.cancel()
            await asyncio.gather(self._committer, *waiting, return_exceptions=True)
            await self.consumer.stop()
            await self.producer.stop()
            self.runner.close()
            log.info("pipeline.stopped", worker=self.worker_id, batches=self.batches)

    async def _room(self) -> int:
        """How many more records may be fetched now (at least 1); raises if the committer failed."""
        limit = self.settings.max_in_flight
        await self._wait_for(lambda: self._in_flight < limit or self._failed())
        self._raise_if_failed()
        return limit - self._in_flight

    async def _wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    def _failed(self) -> bool:
        return self._committer is not None and self._committer.done()

    def _raise_if_failed(self) -> None:
        if self._failed():
            assert self._committer is not None
            self._committer.result()  # raises the commit's error
            raise RuntimeError("the pipeline committer stopped")

    async def drain(self) -> None:
        """Wait until every record in flight has committed; raises if a commit failed."""
        await self._wait_for(lambda: self._in_flight == 0 or self._failed())
        if self._in_flight:
            self._raise_if_failed()

    async def _commit_loop(self) -> None:
        """Commit, one transaction at a time, every record that is ready: stages done, earlier ones committed.

        A record is ready when its stages are done and every earlier record of its
        partition has committed, so each partition's stored offset only moves over
        a contiguous run of applied records. A failure ends the loop (and with it
        the worker) before anything else commits.
        """
        try:
            while True:
                await self._wait_for(lambda: bool(self._ready()))
                ready = sorted(self._ready(), key=lambda p: p.seq)
                await self._commit([p.outcome.result() for p in ready], [p.ms for p in ready])
                for p in ready:
                    self._pending[p.record.partition].popleft()
                self._forget_entity_runs(ready)
                self._in_flight -= len(ready)
                self._changed.set()
        finally:
            self._changed.set()

    def _ready(self) -> list[_Pending]:
        """The leading records of each partition whose stages are done (a failed one raises in the committer)."""
        ready: list[_Pending] = []
        for queue in self._pending.values():
            for p in queue:
                if not p.outcome.done():
                    break
                ready.append(p)
        return ready

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

    async def _apply(self, records: Sequence[SourceRecord]) -> None:
        regressed, keep = self.split_regressed(records)
        if regressed:
            log.warning("offsets.regressed", partitions=sorted(regressed))
            await self._position([TopicPartition(self.settings.raw_topic, p) for p in sorted(regressed)])
        if keep:
            # Before the records are scheduled: the next fetch's regression check compares against them.
            for rec in keep:
                self.expected[rec.partition] = max(self.expected.get(rec.partition, 0), rec.offset + 1)
            for pending in await self._stage(keep):
                self._pending.setdefault(pending.record.partition, deque()).append(pending)
                self._in_flight += 1
                pending.outcome.add_done_callback(lambda _: self._changed.set())

    async def handle_batch(self, records: Sequence[SourceRecord]) -> None:
        """Stage and commit ``records`` in one transaction (what the run loop does, without overlap)."""
        pending = await self._stage(records)
        await self._commit([await p.outcome for p in pending], [p.ms for p in pending])
        self._forget_entity_runs(pending)

    def _forget_entity_runs(self, committed: Sequence[_Pending]) -> None:
        """Once its record is committed, a model run's result is the log's to answer for later copies."""
        for p in committed:
            o = p.outcome.result()
            if isinstance(o, Accepted) and self._entity_runs.get(o.dedup_key.exact_key, (None,))[0] == o.article_id:
                del self._entity_runs[o.dedup_key.exact_key]

    async def _stage(self, records: Sequence[SourceRecord]) -> list[_Pending]:
        """Start the stages of every record not yet applied; each record's task ends with its outcome."""
        s = self.settings
        async with self.pool.acquire() as conn:
            done = await postgres.load_offsets(conn, s.consumer_group, s.raw_topic)
            learned = await chrome_store.refresh(conn, self.learned)
        if learned:
            log.info("chrome.learned", new_lines=learned, total=len(self.learned))
        records = [r for r in records if not _already_applied(r, done.get(r.partition))]
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
            self._seq += 1
            pending.append(_Pending(self._seq, record, task, ms))
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
            entities_of = await self._plan_entities(o)
        finally:
            decided.set_result(None)
        started = time.perf_counter()
        o = await entities_of
        ms["entities"] = (time.perf_counter() - started) * 1000
        ms["ready_at"] = time.perf_counter()
        return o

    async def _commit(self, outcomes: Sequence[Outcome], timings: Sequence[dict[str, float]]) -> None:
        s = self.settings
        started = time.perf_counter()
        rejected = [o for o in outcomes if isinstance(o, Rejected)]
        if rejected:
            # Before the commit: a crash in between re-sends (at-least-once on the DLQ) but never loses one.
            await kafka.send_dead_letters(self.producer, s.dlq_topic, rejected)
        async with self.pool.acquire() as conn, conn.transaction():
            await postgres.lock_appends(conn)
            stored = await postgres.load_offsets(conn, s.consumer_group, s.raw_topic, lock=True)
            to_apply = [o for o in outcomes if not _already_applied(o.record, stored.get(o.record.partition))]
            events, new_articles = await self._events_for(conn, to_apply)
            events = [replace(e, metadata={**e.metadata, "worker": self.worker_id}) for e in events]
            await postgres.append(conn, events)
            await chrome_store.count_lines(conn, learned_chrome.increments(new_articles))
            next_offsets: dict[int, int] = {}
            for o in to_apply:
                next_offsets[o.record.partition] = max(next_offsets.get(o.record.partition, 0), o.record.offset + 1)
            await postgres.save_offsets(conn, s.consumer_group, s.raw_topic, next_offsets, self.cluster_id)
        self.batches += 1
        # Summed over the transaction's records (per-record stage times overlap; commit is this transaction's).
        ms = {"decode": 0.0, "clean": 0.0, "entities": 0.0, "wait": 0.0}
        for t in timings:
            for phase in ("decode", "clean", "entities"):
                ms[phase] += t.get(phase, 0.0)
            ms["wait"] += max(0.0, started - t.get("ready_at", started)) * 1000
        ms = {phase: round(v, 1) for phase, v in ms.items()}
        ms["commit"] = round((time.perf_counter() - started) * 1000, 1)
        log.info(
            "batch.committed",
            records=len(outcomes),
            skipped_already_applied=len(outcomes) - len(to_apply),
            rejected=sum(isinstance(o, Rejected) for o in to_apply),
            events=len(events),
            offsets=next_offsets,
            ms=ms,
        )

    async def _clean(self, record: SourceRecord, decoded: RawArticleV1 | Rejection) -> Outcome:
        """The cleaning stage in a bounded worker; whatever goes wrong becomes a rejection, never a stall."""
        dlq = self.settings.dlq_topic
        if isinstance(decoded, Rejection):
            return reject(record, decoded, dlq)
        try:
            return await self.runner.run(clean_record, record, decoded, self.learned.for_source(decoded.source), dlq)
        except StageTimeout as exc:
            return reject(record, Rejection("cleaning_timeout", str(exc)), dlq)
        except StageCrashed as exc:
            return reject(record, Rejection("cleaning_crashed", str(exc)), dlq)
        except Exception as exc:  # a bug in stage code must not stall the partition: keep the message, say why
            log.exception("stage.failed", topic=record.topic, partition=record.partition, offset=record.offset)
            return reject(record, Rejection("cleaning_crashed", f"{type(exc).__name__}: {exc}"), dlq)

    async def _plan_entities(self, o: Outcome) -> Awaitable[Outcome]:
        """The expensive stage (entities), paid once per text: start the model or reuse a result.

        Exact duplicates reuse the canonical's result (a run still in flight, or
        the stored one), and so do near duplicates whose estimated Jaccard with a
        stored article reaches ``NEAR_REUSE_MIN_JACCARD`` (the same wire story
        under other site chrome or with light edits: the entity model would find
        the same names, plus whatever the foreign chrome mentions). These checks
        are reads before the append transaction; the transaction re-checks under
        the append lock, so a duplicate missed here (committed concurrently by
        another worker, or near a text still in flight) is still recorded as one,
        it just ran the model itself. A partition's records plan in offset order,
        so of two copies in one partition the earlier one runs the model. Returns
        what to await for the outcome with its entity event.
        """
        if not isinstance(o, Accepted):
            return _done(o)
        key = o.dedup_key.exact_key
        if key in self._entity_runs:
            canonical_id, run = self._entity_runs[key]
            return self._reuse(o, canonical_id, run)
        async with self.pool.acquire() as conn:
            known = await dedup_store.entities_by_exact_key(conn, [key])
            match = known.get(key) or await self._near_match(conn, o)
        if match is not None:
            return _done(_with_entities(o, *match))
        run = asyncio.ensure_future(self._extract_entities(o))
        self._entity_runs[key] = (o.article_id, run)
        return self._own(o, run)

    @staticmethod
    async def _own(o: Accepted, run: asyncio.Future[NewEvent]) -> Outcome:
        return o.with_event(await run)

    @staticmethod
    async def _reuse(o: Accepted, canonical_id: uuid.UUID, run: asyncio.Future[NewEvent]) -> Outcome:
        return _with_entities(o, canonical_id, (await run).payload)

    async def _near_match(self, conn: asyncpg.Connection, o: Accepted) -> tuple[uuid.UUID, dict[str, object]] | None:
        """(matched article, its entity results) when ``o`` closely repeats a stored article, else None.

        The results reused are those of the stored article the similarity was
        measured against, which need not be the canonical one.
        """
        found = await dedup_store.find_duplicate(conn, o.article_id, o.dedup_key)
        if found is None or found.similarity < NEAR_REUSE_MIN_JACCARD:
            return None
        results = await dedup_store.latest_entities(conn, [found.matched_id])
        return (found.matched_id, results[found.matched_id]) if found.matched_id in results else None

    async def _extract_entities(self, o: Accepted) -> NewEvent:
        text = o.event(ArticleCleaned.event_type).payload["text"]
        code = o.event(ArticleLanguageDetected.event_type).payload["code"]
        if code not in entities.SUPPORTED_LANGUAGES:
            return stages.entities_event(o, entities.Entities(False, []))
        try:
            return stages.entities_event(o, await entity_plan.extract(self.runner, text, code))
        except (StageTimeout, StageCrashed) as exc:
            return stages.entities_event(o, None, failure=str(exc))
        except Exception as exc:  # keep the article; say why it has no entities
            log.exception("stage.failed", stage=entities.STAGE_NAME, article_id=str(o.article_id))
            return stages.entities_event(o, None, failure=f"{type(exc).__name__}: {exc}")

    async def _events_for(
        self, conn: asyncpg.Connection, outcomes: Sequence[Outcome]
    ) -> tuple[list[NewEvent], list[tuple[str, list[str]]]]:
        """Events to append, and the articles seen for the first time (they feed chrome learning).

        A message whose content equals the article's latest version adds nothing.
        """
        accepted = [o for o in outcomes if isinstance(o, Accepted)]
        versions = await postgres.article_versions(conn, [a.stream_id for a in accepted])
        latest = {stream: h for stream, (h, _) in versions.items()}
        revisions = {stream: n for stream, (_, n) in versions.items()}
        events: list[NewEvent] = []
        new_articles: list[tuple[str, list[str]]] = []
        for o in outcomes:
            where = {"topic": o.record.topic, "partition": o.record.partition, "offset": o.record.offset}
            if isinstance(o, Rejected):
                log.warning("record.rejected", **where, reason=o.rejection.reason, detail=o.rejection.detail[:300])
                events.append(o.event)
            elif latest.get(o.stream_id) == o.content_sha256:
                log.info("record.duplicate_delivery", **where, article_id=str(o.article_id))
            elif o.stream_id not in latest:
                new_articles.append((o.source, o.chrome_candidates))
                latest[o.stream_id], revisions[o.stream_id] = o.content_sha256, 1
                log.debug("record.accepted", **where, article_id=str(o.article_id))
                events.extend(_closed_by_entities(o.events, await self._dedup(conn, o)))
            else:
                revised = ArticleRevised(
                    article_id=o.article_id,
                    revision=revisions[o.stream_id] + 1,
                    previous_content_sha256=latest[o.stream_id],
                    content_sha256=o.content_sha256,
                )
                latest[o.stream_id], revisions[o.stream_id] = o.content_sha256, revised.revision
                log.info("record.revised", **where, article_id=str(o.article_id), revision=revised.revision)
                received, *rest = o.events
                cause = {"causation": {"kind": "event", "event_id": str(received.event_id)}}
                events.extend(
                    _closed_by_entities(
                        [received, NewEvent.of(o.stream_id, revised, cause), *rest], await self._dedup(conn, o)
                    )
                )
        return events, new_articles

    async def _dedup(self, conn: asyncpg.Connection, o: Accepted) -> list[NewEvent]:
        """Look the article up among everything committed before it, and register its keys."""
        keyed = o.event(ArticleDedupKeyed.event_type)
        event = await dedup_store.judge(conn, o.article_id, o.stream_id, o.url, o.dedup_key, keyed.event_id)
        return [event] if event else []


NEAR_REUSE_MIN_JACCARD = 0.8


async def _done(o: Outcome) -> Outcome:
    return o


def _with_entities(o: Accepted, reused_from: uuid.UUID, payload: dict[str, Any]) -> Outcome:
    """``o`` with the entity results of another article (an exact or close copy of it)."""
    event = stages.entities_event(
        o,
        entities.Entities(payload["supported"], payload["entities"]),
        reused_from=reused_from,
        failure=payload.get("failure"),
    )
    return o.with_event(event)


def _closed_by_entities(events: Sequence[NewEvent], dedup_events: Sequence[NewEvent]) -> list[NewEvent]:
    """An article version's events with ArticleEntitiesExtracted last.

    That event closes the version: the story clusterer acts on it, and by then
    the log already holds the duplicate verdict, so a duplicate follows its
    canonical article instead of being clustered on its own.
    """
    closing = ArticleEntitiesExtracted.event_type
    return [*(e for e in events if e.type != closing), *dedup_events, *(e for e in events if e.type == closing)]


def _already_applied(record: SourceRecord, stored: asyncpg.Record | None) -> bool:
    """True when PostgreSQL already holds this record's effect (stored offset past it, same broker)."""
    if stored is None:
        return False
    if stored["cluster_id"] is not None and record.cluster_id is not None and stored["cluster_id"] != record.cluster_id:
        return False
    return record.offset < stored["next_offset"]
