"""The pipeline worker: Kafka batch in, events and offsets out in one PostgreSQL transaction.

Exactly-once effect: the offsets a batch consumed are written in the same
transaction as the events it produced, and on every assignment the consumer
seeks to the offsets stored in PostgreSQL (Kafka-side commits are never used).
Inside the transaction the stored offsets are re-read under a row lock and
records below them are skipped, which fences off a worker that lost its
partitions in a rebalance but still finishes a batch.

Batches overlap: while one batch waits for its commit, up to
``NEWSFLOW_PIPELINE_DEPTH`` − 1 later ones are already being cleaned and
enriched, so the stage workers do not idle through fetches, look-ups and
commits, and one slow article does not hold back the stages of the messages
behind it. Commits still happen one at a time in fetch order, each after the
one before it succeeded, so stored offsets only move over records whose
events are in the log.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from newsflow.adapters import chrome_store, dedup_store, kafka, postgres
from newsflow.domain import entities, learned_chrome, processing
from newsflow.domain.contract import RawArticleV1, Rejection
from newsflow.domain.events import (
    ArticleCleaned,
    ArticleDedupKeyed,
    ArticleLanguageDetected,
    ArticleEntitiesExtracted,
    ArticleRevised,
    ConsumerOffsetsReset,
    NewEvent,
)
from newsflow.domain.offsets import decide_resume
from newsflow.domain.processing import Accepted, Outcome, Rejected, SourceRecord, clean_record, decode_record, reject
from newsflow.settings import Settings
from newsflow.stage_runner import StageCrashed, StageRunner, StageTimeout

log = structlog.get_logger(__name__)


def _decode_batch(records: Sequence[SourceRecord]) -> list[RawArticleV1 | Rejection]:
    return [decode_record(r) for r in records]


class _PhaseTimer:
    """Wall time per phase of a batch, for the batch.committed log line (and the benchmark)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps[phase] = round((now - self._last) * 1000, 1)
        self._last = now


@dataclass
class _Staged:
    """A batch through its stages, ready to append."""

    outcomes: list[Outcome]
    timer: _PhaseTimer
    entity_keys: list[str]  # exact keys of the entity runs it started (shared with later copies until it commits)


@dataclass
class _InFlight:
    staging: asyncio.Task[_Staged]
    committed: asyncio.Future[None]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: "PipelineWorker") -> None:
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
        # Assignment callbacks run in aiokafka's coordinator task, concurrently with getmany():
        # positioning and batch handling never interleave.
        self._positioning = asyncio.Lock()
        self.batches = 0
        # Batches being staged or committed, oldest first; the committer takes them in this order.
        self._inflight: deque[_InFlight] = deque()
        self._wake = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        # Entity model runs not yet committed, by exact dedup key: a copy in a later batch waits for
        # the run instead of paying for its own (the log cannot answer until the run's batch commits).
        self._entity_runs: dict[str, tuple[uuid.UUID, asyncio.Future[NewEvent]]] = {}

    async def position_partitions(self, partitions: Iterable[TopicPartition]) -> None:
        """Seek each partition to the offset stored in PostgreSQL, or reset it safely (and record why)."""
        assigned = sorted(partitions, key=lambda t: t.partition)
        if not assigned:
            return
        async with self._positioning:
            await self._position(assigned)

    async def _position(self, assigned: list[TopicPartition]) -> None:
        """Seek to the stored offsets; batches still in flight commit first, so the stored offsets are current.

        A batch in flight for a partition that has meanwhile moved to another
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
                if self._committer.done():
                    self._committer.result()  # a failed commit stops the worker; PostgreSQL has its offsets
                batch = await self.consumer.getmany(timeout_ms=s.batch_timeout_ms, max_records=s.batch_max_records)
                records = [
                    SourceRecord(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp, self.cluster_id)
                    for tp in sorted(batch, key=lambda t: t.partition)
                    for m in batch[tp]
                ]
                if not records:
                    continue
                async with self._positioning:
                    # Records fetched before this worker positioned a partition are refetched after the seek.
                    records = [r for r in records if r.partition in self.expected]
                    if records:
                        await self._apply(records)
                while len(self._inflight) >= s.pipeline_depth:
                    await asyncio.shield(self._inflight[0].committed)
            await self.drain()
        finally:
            self._committer.cancel()
            for batch_in_flight in self._inflight:
                batch_in_flight.staging.cancel()
            await asyncio.gather(
                self._committer, *(b.staging for b in self._inflight), *(b.committed for b in self._inflight),
                return_exceptions=True,
            )
            await self.consumer.stop()
            await self.producer.stop()
            self.runner.close()
            log.info("pipeline.stopped", worker=self.worker_id, batches=self.batches)

    async def drain(self) -> None:
        """Wait until every batch in flight has committed; raises if a commit failed."""
        if self._inflight:
            await asyncio.shield(self._inflight[-1].committed)

    async def _commit_loop(self) -> None:
        """Commit staged batches one transaction at a time, in fetch order.

        The oldest batch is awaited; later batches already staged by then go
        into the same transaction. If anything fails, no later batch commits
        (its offsets would cover the failed one's records): every waiter gets
        the error and the worker stops.
        """
        try:
            while True:
                while not self._inflight:
                    self._wake.clear()
                    await self._wake.wait()
                ready = [await self._inflight[0].staging]
                while len(ready) < len(self._inflight) and self._inflight[len(ready)].staging.done():
                    ready.append(self._inflight[len(ready)].staging.result())
                try:
                    await self._commit(ready)
                finally:
                    self._forget_entity_runs(ready)
                for _ in ready:
                    self._inflight.popleft().committed.set_result(None)
        except BaseException as exc:
            for batch_in_flight in self._inflight:
                if not batch_in_flight.committed.done():
                    if isinstance(exc, asyncio.CancelledError):
                        batch_in_flight.committed.cancel()
                    else:
                        batch_in_flight.committed.set_exception(exc)
            raise

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
            # Before the batch is scheduled: the next fetch's regression check compares against it.
            for rec in keep:
                self.expected[rec.partition] = max(self.expected.get(rec.partition, 0), rec.offset + 1)
            self._inflight.append(
                _InFlight(asyncio.ensure_future(self._stage(keep)), asyncio.get_running_loop().create_future())
            )
            self._wake.set()

    async def handle_batch(self, records: Sequence[SourceRecord]) -> None:
        """Stage and commit one batch on its own (what the run loop does, without overlap)."""
        staged = await self._stage(records)
        try:
            await self._commit([staged])
        finally:
            self._forget_entity_runs([staged])

    async def _stage(self, records: Sequence[SourceRecord]) -> _Staged:
        s = self.settings
        timer = _PhaseTimer()
        async with self.pool.acquire() as conn:
            done = await postgres.load_offsets(conn, s.consumer_group, s.raw_topic)
            learned = await chrome_store.refresh(conn, self.learned)
        if learned:
            log.info("chrome.learned", new_lines=learned, total=len(self.learned))
        records = [r for r in records if not _already_applied(r, done.get(r.partition))]
        # CPU work off the event loop so heartbeats keep flowing; no transaction is open yet.
        decoded = await asyncio.to_thread(_decode_batch, records)
        timer.lap("decode")
        cleaning = [asyncio.ensure_future(self._clean(r, d)) for r, d in zip(records, decoded, strict=True)]
        staged = _Staged([], timer, [])
        staged.outcomes = await self._enrich(cleaning, staged)
        return staged

    def _forget_entity_runs(self, staged: Sequence[_Staged]) -> None:
        """Once committed (or failed), a batch's entity results are the log's to answer."""
        for batch in staged:
            for key in batch.entity_keys:
                self._entity_runs.pop(key, None)

    async def _commit(self, staged: Sequence[_Staged]) -> None:
        s = self.settings
        started = time.perf_counter()
        outcomes = [o for batch in staged for o in batch.outcomes]
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
        self.batches += len(staged)
        ms: dict[str, float] = {}
        for batch in staged:
            for phase, value in batch.timer.laps.items():
                ms[phase] = round(ms.get(phase, 0.0) + value, 1)
        ms["commit"] = round((time.perf_counter() - started) * 1000, 1)
        log.info(
            "batch.committed",
            batches=len(staged),
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

    async def _enrich(self, cleaning: Sequence[asyncio.Future[Outcome]], staged: _Staged) -> list[Outcome]:
        """The expensive stage (entities), paid once per text, each run started as soon as its article is clean.

        Exact duplicates reuse the canonical's result (a run still in flight in
        this or an earlier batch, or the stored one), and so do near duplicates
        whose estimated Jaccard with a stored article reaches
        ``NEAR_REUSE_MIN_JACCARD`` (the same wire story under other site chrome
        or with light edits: the entity model would find the same names, plus
        whatever the foreign chrome mentions). These checks are reads before the
        append transaction; the transaction re-checks under the append lock, so
        a duplicate missed here (committed concurrently by another worker, or
        near a text still in flight) is still recorded as one, it just ran the
        model itself. Articles are taken in batch order, so which copy runs the
        model does not depend on timing.
        """
        planned: list[tuple[Outcome, asyncio.Future[NewEvent] | None, uuid.UUID | None, dict[str, object] | None]] = []
        for future in cleaning:
            o = await future
            if not isinstance(o, Accepted):
                planned.append((o, None, None, None))
                continue
            key = o.dedup_key.exact_key
            if key in self._entity_runs:
                canonical_id, run = self._entity_runs[key]
                planned.append((o, run, canonical_id, None))
                continue
            async with self.pool.acquire() as conn:
                known = await dedup_store.entities_by_exact_key(conn, [key])
                match = known.get(key) or await self._near_match(conn, o)
            if match is not None:
                planned.append((o, None, *match))
                continue
            run = asyncio.ensure_future(self._extract_entities(o))
            self._entity_runs[key] = (o.article_id, run)
            staged.entity_keys.append(key)
            planned.append((o, run, None, None))
        staged.timer.lap("clean")
        results: list[Outcome] = []
        for o, pending, reused_from, payload in planned:
            if not isinstance(o, Accepted):
                results.append(o)
                continue
            if pending is not None and reused_from is None:
                event = await pending
            else:
                if pending is not None:
                    payload = (await pending).payload
                assert payload is not None
                event = processing.entities_event(
                    o, entities.Entities(payload["supported"], payload["entities"]),
                    reused_from=reused_from, failure=payload.get("failure"),
                )
            results.append(o.with_event(event))
        staged.timer.lap("entities")
        return results

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
            return processing.entities_event(o, entities.Entities(False, []))
        try:
            return processing.entities_event(o, await self.runner.run(entities.extract, text, code))
        except (StageTimeout, StageCrashed) as exc:
            return processing.entities_event(o, None, failure=str(exc))
        except Exception as exc:  # keep the article; say why it has no entities
            log.exception("stage.failed", stage=entities.STAGE_NAME, article_id=str(o.article_id))
            return processing.entities_event(o, None, failure=f"{type(exc).__name__}: {exc}")

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
                    _closed_by_entities([received, NewEvent.of(o.stream_id, revised, cause), *rest],
                                        await self._dedup(conn, o))
                )
        return events, new_articles

    async def _dedup(self, conn: asyncpg.Connection, o: Accepted) -> list[NewEvent]:
        """Look the article up among everything committed before it, and register its keys."""
        keyed = o.event(ArticleDedupKeyed.event_type)
        event = await dedup_store.judge(conn, o.article_id, o.stream_id, o.url, o.dedup_key, keyed.event_id)
        return [event] if event else []


NEAR_REUSE_MIN_JACCARD = 0.8


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
