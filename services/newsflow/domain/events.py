"""Event types, the envelope they travel in, and the registry that upcasts old versions.

An event's payload is validated by its pydantic model when it is created. Stored
events keep the schema version they were written with forever; readers get the
payload upcast to the current version through the registered upcasters, one
version step at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


class EventPayload(BaseModel):
    """Base of every event payload model."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


@dataclass(frozen=True)
class NewEvent:
    """An event about to be appended. ``expected_version`` None means "append at the end"."""

    stream_id: str
    type: str
    schema_version: int
    payload: Payload
    metadata: Payload
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    expected_version: int | None = None

    @classmethod
    def of(
        cls, stream_id: str, payload: EventPayload, metadata: Payload, *, event_id: uuid.UUID | None = None
    ) -> NewEvent:
        return cls(
            stream_id=stream_id,
            type=payload.event_type,
            schema_version=payload.schema_version,
            payload=payload.model_dump(mode="json"),
            metadata=metadata,
            event_id=event_id or uuid.uuid4(),
        )


@dataclass(frozen=True)
class RecordedEvent:
    position: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    payload: Payload
    metadata: Payload
    recorded_at: datetime


class UnknownEventType(LookupError):
    pass


class EventRegistry:
    """Maps event type names to their current payload model and upcasters for older versions."""

    def __init__(self) -> None:
        self._models: dict[str, type[EventPayload]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, model: type[EventPayload]) -> type[EventPayload]:
        self._models[model.event_type] = model
        return model

    def types(self) -> list[str]:
        """Every registered event type, in name order."""
        return sorted(self._models)

    def register_upcaster(self, event_type: str, from_version: int, fn: Upcaster) -> None:
        """``fn`` turns a payload of ``from_version`` into one of ``from_version + 1``."""
        self._upcasters[(event_type, from_version)] = fn

    def current_version(self, event_type: str) -> int:
        try:
            return self._models[event_type].schema_version
        except KeyError:
            raise UnknownEventType(event_type) from None

    def upcast(self, event: RecordedEvent) -> RecordedEvent:
        """The event with its payload at the current schema version; unknown types pass through as stored."""
        if event.type not in self._models:
            return event
        target = self.current_version(event.type)
        payload, version = event.payload, event.schema_version
        while version < target:
            step = self._upcasters.get((event.type, version))
            if step is None:
                raise LookupError(f"no upcaster for {event.type} v{version} -> v{version + 1}")
            payload, version = step(payload), version + 1
        if version == event.schema_version:
            return event
        return RecordedEvent(
            event.position,
            event.event_id,
            event.stream_id,
            event.stream_version,
            event.type,
            version,
            payload,
            event.metadata,
            event.recorded_at,
        )

    def parse(self, event: RecordedEvent) -> EventPayload:
        """The event's payload as its current model (upcast first)."""
        upcast = self.upcast(event)
        return self._models[upcast.type].model_validate(upcast.payload)


registry = EventRegistry()


@registry.register
class ArticleReceived(EventPayload):
    """A valid raw message arrived; it carries the message as received (raw HTML included)."""

    event_type: ClassVar[str] = "ArticleReceived"
    article_id: uuid.UUID
    contract_version: int
    content_sha256: str
    message: Payload


@registry.register
class ArticleRevised(EventPayload):
    """The URL was delivered again with different content: a new version of the same article.

    The events that follow in the stream (cleaning, enrichment) describe this version;
    views follow the latest one.
    """

    event_type: ClassVar[str] = "ArticleRevised"
    article_id: uuid.UUID
    revision: int
    previous_content_sha256: str
    content_sha256: str


class ArticleText(EventPayload):
    """What every event that carries an article's text for the later stages has in common."""

    article_id: uuid.UUID
    stage_version: str
    url: str
    source: str
    title: str | None
    text: str
    word_count: int
    published_at: AwareDatetime | None
    fetched_at: AwareDatetime
    language_hint: str | None


@registry.register
class ArticleNormalized(ArticleText):
    """Superseded by ArticleCleaned (logs written before the cleaning stage still hold it)."""

    event_type: ClassVar[str] = "ArticleNormalized"
    removed_lines: int


class RemovedLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str
    reason: str


@registry.register
class ArticleCleaned(ArticleText):
    """Output of the cleaning stage: the text, title and metadata every later stage works on.

    ``removed`` lists what was cut and why (capped, see ``removed_counts`` for the
    totals); ``chrome_candidates`` are the hashes of the article's short lines,
    from which per-source chrome is learned (newsflow.domain.cleaning.learned_chrome).
    """

    event_type: ClassVar[str] = "ArticleCleaned"
    input_kind: str
    extractor: str | None
    metadata: dict[str, str]
    removed: list[RemovedLine]
    removed_counts: dict[str, int]
    chrome_candidates: list[str]


@registry.register
class ArticleLanguageDetected(EventPayload):
    """The language stage's conclusion for one version of an article (``und``: undetermined)."""

    event_type: ClassVar[str] = "ArticleLanguageDetected"
    article_id: uuid.UUID
    stage_version: str
    detector: str
    code: str
    confidence: float
    hint: str | None


class ExtractedEntity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    type: Literal["person", "org", "place"]
    count: int
    first_offset: int
    aliases: list[str]


@registry.register
class ArticleEntitiesExtracted(EventPayload):
    """People, organizations and places of one article version, with canonical names.

    ``supported`` is false when neither a model nor the known-name pass read the
    article's language (nothing is extracted then); ``model`` names what read it. ``reused_from`` names the canonical article whose results an
    exact duplicate took instead of running the model again. ``failure`` says why a
    run produced nothing (e.g. it overran the stage timeout); the article itself stays.
    """

    event_type: ClassVar[str] = "ArticleEntitiesExtracted"
    article_id: uuid.UUID
    stage_version: str
    model: str
    language: str
    supported: bool
    entities: list[ExtractedEntity]
    reused_from: uuid.UUID | None = None
    failure: str | None = None


@registry.register
class ArticleDedupKeyed(EventPayload):
    """The dedup stage's keys for one version of an article (newsflow.domain.dedup).

    ``signature`` is the MinHash as base64 of little-endian uint32s; ``bands`` are its
    LSH band hashes. Together with ``signature_version`` they make the dedup tables
    rebuildable from the log.
    """

    event_type: ClassVar[str] = "ArticleDedupKeyed"
    article_id: uuid.UUID
    stage_version: str
    signature_version: int
    exact_key: str
    shingle_count: int
    signature: str
    bands: list[int]


@registry.register
class ArticleEmbedded(EventPayload):
    """The multilingual text signal of one article version (newsflow.domain.article_vectors).

    ``vector`` is the unit vector of the title and lead as base64 of ``dims`` little-endian
    float16s; the story clusterer compares it across languages. A version without this event
    (written before the stage existed) is clustered on its terms alone.
    """

    event_type: ClassVar[str] = "ArticleEmbedded"
    article_id: uuid.UUID
    stage_version: str
    model: str
    dims: int
    vector: str


@registry.register
class ArticleDuplicateDetected(EventPayload):
    """This article repeats an earlier one. The first-seen article stays canonical.

    ``similarity`` is 1.0 for an exact duplicate, else the estimated Jaccard with
    ``matched_article_id`` (the closest earlier article, itself possibly a duplicate);
    ``containment`` is how much of the shorter text the longer one holds.
    """

    event_type: ClassVar[str] = "ArticleDuplicateDetected"
    article_id: uuid.UUID
    stage_version: str
    kind: Literal["exact", "near"]
    canonical_article_id: uuid.UUID
    canonical_url: str
    matched_article_id: uuid.UUID
    similarity: float
    containment: float | None


class StoryDecision(EventPayload):
    """What every decision of the story clusterer carries: which story, which clusterer made it."""

    story_id: uuid.UUID
    clusterer_version: str


@registry.register
class StoryStarted(StoryDecision):
    """An article matched no recent story well enough: it starts one (stream ``story-<id>``)."""

    event_type: ClassVar[str] = "StoryStarted"
    article_id: uuid.UUID
    best_score: float
    top_terms: list[str]


@registry.register
class ArticleAssignedToStory(StoryDecision):
    """An article joined a story, and why.

    ``role`` is ``canonical`` for an article judged on its own content (``score``,
    ``shared_entities`` and ``top_terms`` say why it joined; the article that started
    the story has ``started`` true), or ``duplicate`` for an exact or near copy that
    follows its canonical article (``duplicate_of``) without being scored.
    """

    event_type: ClassVar[str] = "ArticleAssignedToStory"
    article_id: uuid.UUID
    role: Literal["canonical", "duplicate"]
    started: bool
    score: float
    shared_entities: list[str]
    top_terms: list[str]
    duplicate_of: uuid.UUID | None = None


MergeReason = Literal["bridge", "background"]


@registry.register
class StoriesMerged(StoryDecision):
    """Stories turned out to be one: ``merged_story_ids`` now belong to ``story_id``.

    ``reason`` says what showed it when ``bridging_article_id`` joined ``story_id``:
    ``bridge``, the article matched those stories too; ``background``, they are small,
    older stories that the story, with the article in it, matches as a whole (a
    background piece written before the event). v2 adds ``reason``; v1 events were
    all bridges.
    """

    event_type: ClassVar[str] = "StoriesMerged"
    schema_version: ClassVar[int] = 2
    merged_story_ids: list[uuid.UUID]
    bridging_article_id: uuid.UUID
    reason: MergeReason = "bridge"


registry.register_upcaster(StoriesMerged.event_type, 1, lambda payload: {**payload, "reason": "bridge"})


@registry.register
class ArticleRejected(EventPayload):
    """A message failed the contract or a stage. The original bytes went to the dead-letter topic.

    v2 adds ``source``: the outlet the message claimed, when it could be read at all
    (it feeds per-source rejection rates); v1 events read as ``source`` None.
    """

    event_type: ClassVar[str] = "ArticleRejected"
    schema_version: ClassVar[int] = 2
    reason: str
    detail: str
    errors: list[dict[str, str]]
    raw_sha256: str
    raw_size: int
    raw_preview: str
    key: str | None
    dead_letter_topic: str
    source: str | None = None


registry.register_upcaster(ArticleRejected.event_type, 1, lambda payload: {**payload, "source": None})


@registry.register
class ConsumerOffsetsReset(EventPayload):
    """Stored Kafka offsets no longer matched the broker's log; the consumer restarted elsewhere.

    Happens when a memory broker restarts empty (new cluster id), a topic is
    recreated (stored offset beyond the log end) or retention removed records
    (stored offset before the log start).

    ``stored_offset`` is how far the old log had been applied (its next offset;
    a memory broker's log starts at 0, so it counts the records applied). What
    the old log held beyond it was never read and cannot be recovered: lag
    measured on the new log does not show it, ``newsflow status`` reports it.
    With ``before_log_start`` the log is the same and the records from
    ``stored_offset`` up to ``log_start`` are the ones lost.
    """

    event_type: ClassVar[str] = "ConsumerOffsetsReset"
    group_id: str
    topic: str
    partition: int
    reason: str
    stored_offset: int
    stored_cluster_id: str | None
    cluster_id: str | None
    log_start: int
    log_end: int
    new_offset: int
