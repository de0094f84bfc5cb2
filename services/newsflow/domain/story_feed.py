"""The story feed's records: what the feed reader publishes for each page of story decisions, and alert rules.

Every record names the log event it came from (``event_id``, ``position``) and
has a ``record_id`` derived from what it is, so a record published again after
a restart has the same id and a consumer drops it. A decision record's id comes
from its event; a story-updated record's from the story and the decision it
follows; an alert's from the story and the rule alone, so an alert is one record
per story and rule whichever page it fired on. Nothing here does I/O: the
reader (``readside/story_feed.py``) reads the snapshots and publishes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from newsflow.domain.events import (
    ArticleAssignedToStory,
    ArticleCleaned,
    ArticleEntitiesExtracted,
    ArticleLanguageDetected,
    ArticleNormalized,
    RecordedEvent,
    StoriesMerged,
    StoryStarted,
    registry,
)
from newsflow.domain.identity import feed_record_id

DECISION_TYPES = (StoryStarted.event_type, ArticleAssignedToStory.event_type, StoriesMerged.event_type)
# Article events that change a story's row when the article already has its story (a revision, a reprocess).
ARTICLE_UPDATE_TYPES = (
    ArticleCleaned.event_type,
    ArticleNormalized.event_type,
    ArticleLanguageDetected.event_type,
    ArticleEntitiesExtracted.event_type,
)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(1, description="Feed record schema version.")
    record_id: uuid.UUID = Field(
        description="Unique per record; a record published again after a restart has the same id: drop repeats."
    )
    story_id: uuid.UUID = Field(description="The story; also the Kafka key (UTF-8).")
    event_id: uuid.UUID = Field(description="The newsflow.events event this record came from.")
    position: int = Field(ge=1, description="That event's position in the log.")
    logged_at: AwareDatetime = Field(description="When that event was recorded.")


class StoryStartedRecord(_Record):
    kind: Literal["story_started"]
    article_id: uuid.UUID = Field(description="The article that started the story.")
    clusterer_version: str


class ArticleAssignedRecord(_Record):
    kind: Literal["article_assigned"]
    article_id: uuid.UUID
    role: Literal["canonical", "duplicate"]
    started: bool = Field(description="True for the article that started the story.")
    score: float = Field(description="Match score when it joined; for a duplicate, its similarity to the canonical.")
    duplicate_of: uuid.UUID | None = Field(description="For a duplicate: the canonical article it followed.")


class StoriesMergedRecord(_Record):
    kind: Literal["stories_merged"]
    merged_story_ids: list[uuid.UUID] = Field(description="Stories absorbed into story_id: forget them.")
    bridging_article_id: uuid.UUID
    reason: Literal["bridge", "background"]


class StorySummary(BaseModel):
    """A story as the projection holds it (``dashboard.stories``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    headline: str | None = Field(description="Title of the representative article (one line).")
    article_count: int = Field(ge=0)
    source_count: int = Field(ge=0)
    sources: list[str] = Field(description="Distinct sources, sorted.")
    languages: list[str] = Field(description="Distinct detected languages (ISO 639-1), sorted.")
    top_entities: list[str] = Field(description="Up to 10 canonical entity names, most named first.")
    first_seen: AwareDatetime | None = Field(description="Earliest first_seen of its articles.")
    last_seen: AwareDatetime | None = Field(description="Latest first_seen of its articles.")


class StoryUpdatedRecord(_Record, StorySummary):
    kind: Literal["story_updated"]
    projected_through: int = Field(
        ge=0, description="The story as the projection stood after this log position (>= position): keep the latest."
    )


class AlertRecord(_Record):
    kind: Literal["alert"]
    rule: str = Field(description="Rule name and threshold, e.g. min_sources>=3.")
    threshold: int = Field(ge=1)
    value: int = Field(description="The story's value when the rule fired (>= threshold).")
    headline: str | None
    article_count: int = Field(ge=0)
    source_count: int = Field(ge=0)


FeedRecord = Annotated[
    StoryStartedRecord | ArticleAssignedRecord | StoriesMergedRecord | StoryUpdatedRecord | AlertRecord,
    Field(discriminator="kind"),
]
FEED_RECORD: TypeAdapter[FeedRecord] = TypeAdapter(FeedRecord)


def feed_json_schema() -> dict[str, object]:
    """The JSON Schema checked into ``schemas/story_feed.v1.json`` (a test keeps the two equal)."""
    schema = FEED_RECORD.json_schema(mode="serialization")
    schema["$id"] = "https://newsflow.dev/schemas/story_feed.v1.json"
    schema["title"] = "StoryFeedRecord"
    schema["description"] = (
        "One record of the newsflow.stories topic. Key: the story id (UTF-8). Delivery is at least once: "
        "drop a record whose record_id you have seen."
    )
    return schema


@dataclass(frozen=True)
class StorySnapshot:
    """A story row read from the projection, and the most articles it had first seen within one hour."""

    story_id: uuid.UUID
    summary: StorySummary
    peak_hour_articles: int
    projected_through: int


def snapshot(row: Mapping[str, Any]) -> StorySnapshot:
    """A snapshot from a ``projection.stories`` row (plus ``peak_hour_articles`` and ``projected_through``)."""
    headline = row["headline"]
    return StorySnapshot(
        story_id=row["story_id"],
        summary=StorySummary(
            headline=" ".join(headline.split()) if headline is not None else None,
            article_count=row["article_count"] or 0,
            source_count=row["source_count"] or 0,
            sources=list(row["sources"] or []),
            languages=list(row["languages"] or []),
            top_entities=list(row["top_entities"] or []),
            first_seen=row["first_seen"],
            last_seen=row["last_seen"],
        ),
        peak_hour_articles=int(row["peak_hour_articles"] or 0),
        projected_through=int(row["projected_through"] or 0),
    )


AlertMeasure = Literal["min_articles", "min_sources", "min_articles_per_hour"]


@dataclass(frozen=True)
class AlertRule:
    """Fires once per story when the story's measure reaches ``threshold``."""

    measure: AlertMeasure
    threshold: int

    @property
    def name(self) -> str:
        return f"{self.measure}>={self.threshold}"

    def value(self, story: StorySnapshot) -> int:
        if self.measure == "min_articles":
            return story.summary.article_count
        if self.measure == "min_sources":
            return story.summary.source_count
        return story.peak_hour_articles


def alert_rules(min_articles: int = 0, min_sources: int = 0, min_articles_per_hour: int = 0) -> list[AlertRule]:
    """The rules switched on (a threshold of 0 is off)."""
    wanted: list[tuple[AlertMeasure, int]] = [
        ("min_articles", min_articles),
        ("min_sources", min_sources),
        ("min_articles_per_hour", min_articles_per_hour),
    ]
    return [AlertRule(measure, n) for measure, n in wanted if n > 0]


def _envelope(event: RecordedEvent, kind: str, story_id: uuid.UUID, *id_parts: object) -> dict[str, object]:
    return {
        "record_id": feed_record_id(kind, *id_parts),
        "story_id": story_id,
        "event_id": event.event_id,
        "position": event.position,
        "logged_at": event.recorded_at,
        "kind": kind,
    }


def decision_record(event: RecordedEvent) -> StoryStartedRecord | ArticleAssignedRecord | StoriesMergedRecord | None:
    """The record of one story decision (an upcast event); None for any other event."""
    if event.type not in DECISION_TYPES:
        return None
    decision = registry.parse(event)
    if isinstance(decision, StoryStarted):
        s = decision
        return StoryStartedRecord.model_validate(
            {
                **_envelope(event, "story_started", s.story_id, event.event_id),
                "article_id": s.article_id,
                "clusterer_version": s.clusterer_version,
            }
        )
    if isinstance(decision, ArticleAssignedToStory):
        a = decision
        return ArticleAssignedRecord.model_validate(
            {
                **_envelope(event, "article_assigned", a.story_id, event.event_id),
                "article_id": a.article_id,
                "role": a.role,
                "started": a.started,
                "score": a.score,
                "duplicate_of": a.duplicate_of,
            }
        )
    assert isinstance(decision, StoriesMerged)
    m = decision
    return StoriesMergedRecord.model_validate(
        {
            **_envelope(event, "stories_merged", m.story_id, event.event_id),
            "merged_story_ids": m.merged_story_ids,
            "bridging_article_id": m.bridging_article_id,
            "reason": m.reason,
        }
    )


def decided_story(event: RecordedEvent) -> uuid.UUID | None:
    """The story a decision event changes (for a merge, the surviving one); None for other events."""
    if event.type not in DECISION_TYPES:
        return None
    return uuid.UUID(str(event.payload["story_id"]))  # every version of every decision names it


def updated_article(event: RecordedEvent) -> uuid.UUID | None:
    """The article an event may update in a story it is already in; None for other events."""
    if event.type not in ARTICLE_UPDATE_TYPES:
        return None
    return uuid.UUID(str(event.payload["article_id"]))


def story_changes(
    events: Iterable[RecordedEvent], placed: Mapping[uuid.UUID, tuple[uuid.UUID, int]]
) -> dict[uuid.UUID, RecordedEvent]:
    """Per story the page changed, the last event that changed it: its story-updated record follows that one.

    A decision changes its story. An article event changes the story the article
    is in (``placed``: article → its story now and the position of the decision
    that placed it) only if that decision came before the event: a revision or a
    reprocess, whereas a new article's events precede its decision, which follows.
    """
    last: dict[uuid.UUID, RecordedEvent] = {}
    for event in events:
        story = decided_story(event)
        article = updated_article(event) if story is None else None
        if article is not None and article in placed and placed[article][1] < event.position:
            story = placed[article][0]
        if story is not None:
            last[story] = event
    return last


def story_updated(event: RecordedEvent, story: StorySnapshot) -> StoryUpdatedRecord:
    return StoryUpdatedRecord.model_validate(
        {
            **_envelope(event, "story_updated", story.story_id, story.story_id, event.event_id),
            **story.summary.model_dump(),
            "projected_through": story.projected_through,
        }
    )


def due_alerts(
    event: RecordedEvent, story: StorySnapshot, rules: Sequence[AlertRule], fired: set[str]
) -> list[AlertRecord]:
    """Alerts the story reaches with this decision, leaving out the rules in ``fired`` (names)."""
    out = []
    for rule in rules:
        value = rule.value(story)
        if rule.name in fired or value < rule.threshold:
            continue
        out.append(
            AlertRecord.model_validate(
                {
                    **_envelope(event, "alert", story.story_id, story.story_id, rule.name),
                    "rule": rule.name,
                    "threshold": rule.threshold,
                    "value": value,
                    "headline": story.summary.headline,
                    "article_count": story.summary.article_count,
                    "source_count": story.summary.source_count,
                }
            )
        )
    return out


def encode(record: BaseModel) -> bytes:
    return record.model_dump_json().encode("utf-8")


def kafka_key(story_id: uuid.UUID) -> bytes:
    return str(story_id).encode("utf-8")


def _short(value: object) -> str:
    return str(value)[:8]


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "—"


def render(record: FeedRecord) -> str:
    """One readable line (``newsflow stories follow``)."""
    head = f"{_when(record.logged_at)}  {record.story_id}  "
    if isinstance(record, StoryStartedRecord):
        return head + f"story started by article {_short(record.article_id)}"
    if isinstance(record, ArticleAssignedRecord):
        how = f"copy of {_short(record.duplicate_of)}" if record.role == "duplicate" else f"score {record.score:.3f}"
        return head + f"+ article {_short(record.article_id)} ({record.role}, {how})"
    if isinstance(record, StoriesMergedRecord):
        merged = ", ".join(str(s) for s in record.merged_story_ids)
        return head + f"absorbed {merged} ({record.reason}, article {_short(record.bridging_article_id)})"
    if isinstance(record, StoryUpdatedRecord):
        languages = ",".join(record.languages) or "—"
        entities = ", ".join(record.top_entities[:5]) or "—"
        return head + (
            f"{record.article_count} {'article' if record.article_count == 1 else 'articles'}, "
            f"{record.source_count} {'source' if record.source_count == 1 else 'sources'}, {languages}; "
            f"{_when(record.first_seen)} → {_when(record.last_seen)}; {entities} | {record.headline or '(no title)'}"
        )
    return head + f"ALERT {record.rule}: {record.value} | {record.headline or '(no title)'}"
