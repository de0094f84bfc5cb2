"""The story clusterer: follows the event log and records each article's story as events.

It is a log reader (same never-skip guarantee and checkpoint-in-transaction as
the projections) that appends: for every article version closed by its
``ArticleEntitiesExtracted`` event (the pipeline writes it last, after the
duplicate verdict), it appends ``StoryStarted`` / ``ArticleAssignedToStory`` /
``StoriesMerged`` to the story's stream, in the transaction that moves its
checkpoint. A canonical article is judged by the pure online clusterer
(``domain/clustering.py``); a duplicate follows its canonical article's story
without being scored, so copies never pull a story's centroid. An article keeps
the story it was first given: revisions and reprocessing do not move it.

The clusterer's memory (term statistics, recent stories, recent article →
story answers) is a function of the log up to its checkpoint. It is snapshotted
(pickled, off the event loop) every ``snapshot_every`` articles in the same
transaction as the checkpoint; on start, or when another instance moved the
checkpoint, the state is restored from the latest snapshot of this clusterer
version, and the articles after it are applied again with the decisions the log
recorded for them (never decided twice), so the state follows the log even
after an upgrade changed how new articles are decided.
"""

from __future__ import annotations

import asyncio
import io
import pickle
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from newsflow.adapters import metrics, postgres
from newsflow.domain import article_vectors, clusterer_settings, clustering, story_decisions
from newsflow.domain.events import (
    ArticleAssignedToStory,
    ArticleCleaned,
    ArticleDuplicateDetected,
    ArticleEmbedded,
    ArticleEntitiesExtracted,
    ArticleLanguageDetected,
    ArticleNormalized,
    NewEvent,
    RecordedEvent,
    StoriesMerged,
    registry,
)
from newsflow.domain.identity import article_stream, story_id_for, story_stream

log = structlog.get_logger(__name__)

READER = "clusterer.stories"
STORY_OF_CACHE = 100_000  # article → story answers kept in memory; older ones come from the log
_VERSION_TYPES = (  # what the clusterer reads of a version before the event that closes it
    ArticleCleaned.event_type,
    ArticleNormalized.event_type,
    ArticleLanguageDetected.event_type,
    ArticleEmbedded.event_type,
    ArticleDuplicateDetected.event_type,
)
_INPUT_TYPES = (*_VERSION_TYPES, ArticleEntitiesExtracted.event_type)


@dataclass
class _Version:
    """What the log said so far about an article version that its EntitiesExtracted has not closed yet."""

    title: str | None
    text: str
    at: datetime
    language: str = "und"
    duplicate_of: str | None = None
    similarity: float = 1.0
    vector: article_vectors.Vector | None = None  # None: logged before the vector stage existed


@dataclass(frozen=True)
class _Recorded:
    """A decision already in the log, keyed by the position of the event that closed its article."""

    story_id: str
    role: str
    merged: tuple[str, ...] = ()


@dataclass
class ClustererState:
    """Everything the decisions depend on; pickled into snapshots.

    Story ids are the story UUIDs as text. ``story_of`` is a bounded cache of
    article → story; older answers come from the log (an index on the
    assignment events), so the state does not grow with every article ever seen.
    """

    model: clustering.OnlineClusterer
    story_of: OrderedDict[str, str]
    merged_into: dict[str, str]
    articles: int = 0

    @classmethod
    def empty(cls) -> ClustererState:
        return cls(clustering.OnlineClusterer(), OrderedDict(), {})

    def resolve(self, story: str) -> str:
        return clustering.follow_merges(self.merged_into, story)

    def remember(self, article_id: str, story: str) -> None:
        self.story_of[article_id] = story
        self.story_of.move_to_end(article_id)
        while len(self.story_of) > STORY_OF_CACHE:
            self.story_of.popitem(last=False)


class StoryClusterer:
    def __init__(self, snapshot_every: int = 5000) -> None:
        self.snapshot_every = snapshot_every
        self.state = ClustererState.empty()
        self.position = 0  # the log position the state stands for; -1 while a page is half applied
        self._pending: dict[str, _Version] = {}
        self._recorded: dict[int, _Recorded] = {}
        self._since_snapshot = 0
        self._appended: list[NewEvent] = []  # the last page's decisions, counted once its transaction commits

    async def handle(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        """LogReader handler: decide, snapshot now and then, append the decisions (all in the reader's transaction)."""
        checkpoint = await postgres.load_checkpoint(conn, READER)
        if checkpoint != self.position:
            await self.restore(conn, checkpoint)
        self.position = -1  # if this page fails half way, the next one restores first
        self._appended = []
        decisions: list[NewEvent] = []
        for event in events:
            decisions.extend(await self._fold(conn, event))
        self._pending.clear()  # a version split across pages is read back from the log
        if self._since_snapshot >= self.snapshot_every:
            await self._save_snapshot(conn, events[-1].position)
        if decisions:
            await postgres.append(conn, decisions)  # takes the append lock: last, and briefly
        self.position = events[-1].position
        self._appended = decisions

    def committed(self) -> None:
        """LogReader hook: the last page's transaction committed, so its decisions are in the log."""
        metrics.events_appended(self._appended)
        self._appended = []

    async def restore(self, conn: asyncpg.Connection, checkpoint: int) -> None:
        """Rebuild the in-memory state for ``checkpoint``: the latest usable snapshot, then the log after it.

        Articles after the snapshot are not decided again: their recorded
        decisions are applied (``OnlineClusterer.place``). So the state follows
        the log even when this code is not the version that decided.
        """
        row = await conn.fetchrow(
            "SELECT position, version, state FROM newsflow.reader_snapshots WHERE name = $1", READER
        )
        self.state, self.position = ClustererState.empty(), 0
        if row is not None and row["version"] == clusterer_settings.CLUSTERER_VERSION and row["position"] <= checkpoint:
            try:
                self.state = await asyncio.to_thread(_load, row["state"])
                self.position = row["position"]
            except Exception:  # an unreadable snapshot costs a longer replay, nothing else
                log.exception("clusterer.snapshot_unreadable", position=row["position"])
        self._pending.clear()
        self._recorded = await _recorded_decisions(conn, self.position)
        replayed = 0
        while self.position < checkpoint:
            page = [e for e in await postgres.read_after(conn, self.position, 1000) if e.position <= checkpoint]
            if not page:
                break
            for event in page:
                await self._fold(conn, registry.upcast(event))
                replayed += 1
            self._pending.clear()
            self.position = page[-1].position
        self.position = checkpoint
        self._recorded = {}
        self._since_snapshot = 0
        log.info(
            "clusterer.restored",
            snapshot=row["position"] if row else None,
            checkpoint=checkpoint,
            replayed_events=replayed,
            articles=self.state.articles,
        )

    async def _save_snapshot(self, conn: asyncpg.Connection, position: int) -> None:
        blob = await asyncio.to_thread(_dump, self.state)  # off the event loop: heartbeats keep flowing
        await conn.execute(
            """
            INSERT INTO newsflow.reader_snapshots (name, position, version, state, articles)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, version = EXCLUDED.version,
                state = EXCLUDED.state, articles = EXCLUDED.articles, taken_at = now()
            """,
            READER,
            position,
            clusterer_settings.CLUSTERER_VERSION,
            blob,
            self.state.articles,
        )
        self._since_snapshot = 0
        log.info("clusterer.snapshot", position=position, bytes=len(blob), articles=self.state.articles)

    async def _fold(self, conn: asyncpg.Connection, event: RecordedEvent) -> list[NewEvent]:
        if event.type not in _INPUT_TYPES:
            return []
        if event.type != ArticleEntitiesExtracted.event_type:
            _note(self._pending, event)
            return []
        article_id = event.payload["article_id"]
        version = self._pending.pop(article_id, None)
        recorded = self._recorded.get(event.position)
        if recorded is None and await self._story_of(conn, article_id) is not None:
            return []  # an article keeps its first story
        version = version or await _version_from_log(conn, event)
        if version is None:
            log.warning("clusterer.no_text", article_id=article_id, position=event.position)
            return []
        entities = tuple(e["name"] for e in event.payload["entities"])
        if recorded is not None:
            self._replay(article_id, version, entities, recorded)
            return []
        return await self._decide(conn, article_id, version, entities, event)

    async def _story_of(self, conn: asyncpg.Connection, article_id: str) -> str | None:
        story = self.state.story_of.get(article_id)
        if story is None:
            story = await conn.fetchval(
                "SELECT payload->>'story_id' FROM newsflow.events"
                " WHERE type = $1 AND payload->>'article_id' = $2 ORDER BY position LIMIT 1",
                ArticleAssignedToStory.event_type,
                article_id,
            )
        return self.state.resolve(story) if story is not None else None

    def _replay(self, article_id: str, version: _Version, entities: tuple[str, ...], recorded: _Recorded) -> None:
        state = self.state
        state.articles += 1
        if recorded.role == "canonical":
            state.model.place(_input(article_id, version, entities), recorded.story_id, recorded.merged)
            for merged in recorded.merged:
                state.merged_into[merged] = recorded.story_id
        state.remember(article_id, recorded.story_id)

    async def _decide(
        self,
        conn: asyncpg.Connection,
        article_id: str,
        version: _Version,
        entities: tuple[str, ...],
        cause: RecordedEvent,
    ) -> list[NewEvent]:
        state = self.state
        metadata = {"causation": {"kind": "event", "event_id": str(cause.event_id), "position": cause.position}}
        canonical_story = await self._story_of(conn, version.duplicate_of) if version.duplicate_of else None
        state.articles += 1
        self._since_snapshot += 1
        if canonical_story is not None:
            state.remember(article_id, canonical_story)
            sid = uuid.UUID(canonical_story)
            assigned = story_decisions.duplicate_assigned(
                sid, uuid.UUID(article_id), uuid.UUID(version.duplicate_of), version.similarity
            )
            return [NewEvent.of(story_stream(sid), assigned, metadata)]
        decision = state.model.add(
            _input(article_id, version, entities), new_story_id=str(story_id_for(uuid.UUID(article_id)))
        )
        state.remember(article_id, decision.story_id)
        for merged in decision.merged:
            state.merged_into[merged] = decision.story_id
        stream = story_stream(uuid.UUID(decision.story_id))
        payloads = story_decisions.decision_payloads(uuid.UUID(article_id), decision, entities)
        return [NewEvent.of(stream, payload, metadata) for payload in payloads]


def _input(article_id: str, version: _Version, entities: tuple[str, ...]) -> clustering.ArticleInput:
    return clustering.ArticleInput(
        article_id=article_id,
        title=version.title,
        text=version.text,
        entities=entities,
        at=version.at,
        language=version.language,
        vector=version.vector,
    )


def _dump(state: ClustererState) -> bytes:
    return zlib.compress(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), 1)


# Classes that snapshots name by where they lived when the snapshot was taken.
_MOVED = {
    ("newsflow.story_clusterer", "ClustererState"): ("newsflow.readside.story_clusterer", "ClustererState"),
    ("newsflow.domain.clustering", "Settings"): ("newsflow.domain.clusterer_settings", "ClustererSettings"),
}


class _SnapshotUnpickler(pickle.Unpickler):
    """Reads snapshots written before a class moved: a move is not a new clusterer version."""

    def find_class(self, module: str, name: str) -> Any:
        module, name = _MOVED.get((module, name), (module, name))
        return super().find_class(module, name)


def _load(blob: bytes) -> ClustererState:
    state = _SnapshotUnpickler(io.BytesIO(zlib.decompress(blob))).load()
    if not isinstance(state, ClustererState):
        raise TypeError(f"snapshot holds {type(state).__name__}, not ClustererState")
    return state


async def _recorded_decisions(conn: asyncpg.Connection, after: int) -> dict[int, _Recorded]:
    """Decisions recorded for articles closed after ``after``, by the position of the closing event."""
    rows = await conn.fetch(
        "SELECT type, payload, metadata FROM newsflow.events"
        " WHERE type = ANY($1::text[]) AND position > $2 ORDER BY position",
        [ArticleAssignedToStory.event_type, StoriesMerged.event_type],
        after,
    )
    merged: dict[int, tuple[str, ...]] = {}
    recorded: dict[int, _Recorded] = {}
    for r in rows:
        closing = r["metadata"].get("causation", {}).get("position")
        if closing is None or closing <= after:
            continue
        if r["type"] == StoriesMerged.event_type:  # one event per reason; applied in the sorted order add() used
            merged[closing] = tuple(sorted((*merged.get(closing, ()), *r["payload"]["merged_story_ids"])))
        else:
            recorded[closing] = _Recorded(r["payload"]["story_id"], r["payload"]["role"], merged.get(closing, ()))
    return recorded


def _note(pending: dict[str, _Version], event: RecordedEvent) -> None:
    p = event.payload
    article_id = p["article_id"]
    if event.type in (ArticleCleaned.event_type, ArticleNormalized.event_type):
        at = p.get("published_at") or p["fetched_at"]
        pending[article_id] = _Version(p.get("title"), p["text"], datetime.fromisoformat(at))
        return
    version = pending.get(article_id)
    if version is None:
        return
    if event.type == ArticleLanguageDetected.event_type:
        version.language = p["code"]
    elif event.type == ArticleEmbedded.event_type:
        version.vector = article_vectors.decode(p["vector"])
    elif event.type == ArticleDuplicateDetected.event_type:
        version.duplicate_of, version.similarity = p["canonical_article_id"], float(p["similarity"])


async def _version_from_log(conn: asyncpg.Connection, closing: RecordedEvent) -> _Version | None:
    """The article version that ``closing`` ends, read back from its stream (only events before it)."""
    stream = article_stream(uuid.UUID(closing.payload["article_id"]))
    pending: dict[str, _Version] = {}
    for event in await postgres.read_stream_before(conn, stream, closing.position, _VERSION_TYPES):
        _note(pending, registry.upcast(event))
    return pending.get(closing.payload["article_id"])
