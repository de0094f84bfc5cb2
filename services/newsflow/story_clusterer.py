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

The clusterer's memory (term statistics, recent stories, which article is in
which story) is a deterministic function of the log up to its checkpoint. It is
snapshotted (pickled) every ``snapshot_every`` articles in the same transaction
as the checkpoint; on start, or when another instance moved the checkpoint, the
state is restored from the latest snapshot and the events after it are folded
in again without appending (they were decided before, identically).
"""

from __future__ import annotations

import pickle
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
import asyncpg
import structlog

from newsflow.adapters import postgres
from newsflow.domain import clustering
from newsflow.domain.entities import fold
from newsflow.domain.events import (
    ArticleAssignedToStory,
    ArticleCleaned,
    ArticleDuplicateDetected,
    ArticleEntitiesExtracted,
    ArticleLanguageDetected,
    ArticleNormalized,
    NewEvent,
    RecordedEvent,
    StoriesMerged,
    StoryStarted,
    registry,
)
from newsflow.domain.identity import article_stream, story_id_for

log = structlog.get_logger(__name__)

READER = "clusterer.stories"
STORY_STREAM_PREFIX = "story-"
_INPUT_TYPES = (
    ArticleCleaned.event_type, ArticleNormalized.event_type, ArticleLanguageDetected.event_type,
    ArticleDuplicateDetected.event_type, ArticleEntitiesExtracted.event_type,
)


def story_stream(story_id: uuid.UUID) -> str:
    return f"{STORY_STREAM_PREFIX}{story_id}"


def story_uuid(domain_story_id: str) -> uuid.UUID:
    """A story's id: derived from the article that started it, so a replay gives the same ids."""
    return story_id_for(uuid.UUID(domain_story_id))


@dataclass
class _Version:
    """What the log said so far about an article version that its EntitiesExtracted has not closed yet."""

    title: str | None
    text: str
    at: datetime
    language: str = "und"
    duplicate_of: str | None = None
    similarity: float = 1.0


@dataclass
class ClustererState:
    """Everything the decisions depend on; pickled into snapshots."""

    model: clustering.OnlineClusterer
    story_of: dict[str, str]
    merged_into: dict[str, str]
    articles: int = 0

    @classmethod
    def empty(cls) -> "ClustererState":
        return cls(clustering.OnlineClusterer(), {}, {})

    def resolve(self, story: str) -> str:
        while story in self.merged_into:
            story = self.merged_into[story]
        return story


class StoryClusterer:
    def __init__(self, snapshot_every: int = 5000) -> None:
        self.snapshot_every = snapshot_every
        self.state = ClustererState.empty()
        self.position = 0
        self._pending: dict[str, _Version] = {}
        self._since_snapshot = 0

    async def handle(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        """LogReader handler: decide, append the decisions, snapshot now and then (all in the reader's transaction)."""
        checkpoint = await postgres.load_checkpoint(conn, READER)
        if checkpoint != self.position:
            await self.restore(conn, checkpoint)
        decisions: list[NewEvent] = []
        for event in events:
            decisions.extend(await self._fold(conn, event))
        self.position = events[-1].position
        if decisions:
            await postgres.append(conn, decisions)
        if self._since_snapshot >= self.snapshot_every:
            await self._save_snapshot(conn)

    async def restore(self, conn: asyncpg.Connection, checkpoint: int) -> None:
        """Rebuild the in-memory state for ``checkpoint``: latest usable snapshot, then fold the rest."""
        row = await conn.fetchrow(
            "SELECT position, version, state FROM newsflow.reader_snapshots WHERE name = $1", READER
        )
        if row is not None and row["version"] == clustering.CLUSTERER_VERSION and row["position"] <= checkpoint:
            self.state = pickle.loads(zlib.decompress(row["state"]))
            self.position = row["position"]
        else:
            self.state, self.position = ClustererState.empty(), 0
        self._pending.clear()
        replayed = 0
        while self.position < checkpoint:
            page = await postgres.read_after(conn, self.position, 1000)
            page = [e for e in page if e.position <= checkpoint]
            if not page:
                break
            for event in page:
                await self._fold(conn, registry.upcast(event))
                replayed += 1
            self.position = page[-1].position
        self.position = checkpoint
        self._since_snapshot = 0
        log.info("clusterer.restored", snapshot=row["position"] if row else None, checkpoint=checkpoint,
                 replayed_events=replayed, articles=self.state.articles)

    async def _save_snapshot(self, conn: asyncpg.Connection) -> None:
        blob = zlib.compress(pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL), 1)
        await conn.execute(
            """
            INSERT INTO newsflow.reader_snapshots (name, position, version, state, articles)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, version = EXCLUDED.version,
                state = EXCLUDED.state, articles = EXCLUDED.articles, taken_at = now()
            """,
            READER, self.position, clustering.CLUSTERER_VERSION, blob, self.state.articles,
        )
        self._since_snapshot = 0
        log.info("clusterer.snapshot", position=self.position, bytes=len(blob), articles=self.state.articles)

    async def _fold(self, conn: asyncpg.Connection, event: RecordedEvent) -> list[NewEvent]:
        if event.type not in _INPUT_TYPES:
            return []
        article_id = event.payload["article_id"]
        if article_id in self.state.story_of:
            self._pending.pop(article_id, None)
            return []  # an article keeps its first story
        if event.type != ArticleEntitiesExtracted.event_type:
            _note(self._pending, event)
            return []
        version = self._pending.pop(article_id, None) or await _version_from_log(conn, event)
        if version is None:
            log.warning("clusterer.no_text", article_id=article_id, position=event.position)
            return []
        entities = tuple(e["name"] for e in event.payload["entities"])
        return self._decide(article_id, version, entities, event)

    def _decide(
        self, article_id: str, version: _Version, entities: tuple[str, ...], cause: RecordedEvent
    ) -> list[NewEvent]:
        state = self.state
        metadata = {"causation": {"kind": "event", "event_id": str(cause.event_id), "position": cause.position}}
        canonical_story = state.story_of.get(version.duplicate_of) if version.duplicate_of else None
        state.articles += 1
        self._since_snapshot += 1
        if canonical_story is not None:
            story = state.resolve(canonical_story)
            state.story_of[article_id] = story
            sid = story_uuid(story)
            assigned = ArticleAssignedToStory(
                story_id=sid, clusterer_version=clustering.CLUSTERER_VERSION, article_id=uuid.UUID(article_id),
                role="duplicate", started=False, score=round(version.similarity, 4), shared_entities=[],
                top_terms=[], duplicate_of=uuid.UUID(version.duplicate_of),  # type: ignore[arg-type]
            )
            return [NewEvent.of(story_stream(sid), assigned, metadata)]
        decision = state.model.add(clustering.ArticleInput(
            article_id=article_id, title=version.title, text=version.text, entities=entities,
            at=version.at, language=version.language,
        ))
        state.story_of[article_id] = decision.story_id
        sid = story_uuid(decision.story_id)
        stream = story_stream(sid)
        out: list[NewEvent] = []
        if decision.started:
            out.append(NewEvent.of(stream, StoryStarted(
                story_id=sid, clusterer_version=clustering.CLUSTERER_VERSION, article_id=uuid.UUID(article_id),
                best_score=decision.score, top_terms=list(decision.top_terms),
            ), metadata))
        if decision.merged:
            for merged in decision.merged:
                state.merged_into[merged] = decision.story_id
            out.append(NewEvent.of(stream, StoriesMerged(
                story_id=sid, clusterer_version=clustering.CLUSTERER_VERSION,
                merged_story_ids=[story_uuid(m) for m in decision.merged],
                bridging_article_id=uuid.UUID(article_id),
            ), metadata))
        out.append(NewEvent.of(stream, ArticleAssignedToStory(
            story_id=sid, clusterer_version=clustering.CLUSTERER_VERSION, article_id=uuid.UUID(article_id),
            role="canonical", started=decision.started, score=decision.score,
            shared_entities=_display_names(decision.shared_entities, entities), top_terms=list(decision.top_terms),
        ), metadata))
        return out


def _display_names(shared: Sequence[str], names: Sequence[str]) -> list[str]:
    """The article's own spelling of the entities the clusterer matched (it may compare folded names)."""
    spelled = {fold(n): n for n in names}
    return [spelled.get(fold(s), s) for s in shared]


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
    elif event.type == ArticleDuplicateDetected.event_type:
        version.duplicate_of, version.similarity = p["canonical_article_id"], float(p["similarity"])


async def _version_from_log(conn: asyncpg.Connection, closing: RecordedEvent) -> _Version | None:
    """The article version that ``closing`` ends, read back from its stream (only events before it)."""
    stream = article_stream(uuid.UUID(closing.payload["article_id"]))
    pending: dict[str, _Version] = {}
    for event in await postgres.read_stream_before(conn, stream, closing.position, _INPUT_TYPES[:4]):
        _note(pending, registry.upcast(event))
    return pending.get(closing.payload["article_id"])
