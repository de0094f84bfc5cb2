"""The story feed's records, built from events and story snapshots: ids, shapes, alert rules and lines."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema

from newsflow.domain import story_feed
from newsflow.domain.events import (
    ArticleAssignedToStory,
    ArticleCleaned,
    ArticleEntitiesExtracted,
    RecordedEvent,
    StoriesMerged,
    StoryStarted,
)

SCHEMA_FILE = Path(__file__).parents[2] / "schemas" / "story_feed.v1.json"
AT = datetime(2024, 6, 3, 9, tzinfo=UTC)
STORY, OTHER, ARTICLE = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def recorded(position: int, type_: str, payload: dict[str, object], version: int = 1) -> RecordedEvent:
    return RecordedEvent(position, uuid.uuid4(), f"story-{STORY}", position, type_, version, payload, {}, AT)


def started_event(position: int = 1) -> RecordedEvent:
    payload = StoryStarted(story_id=STORY, clusterer_version="5", article_id=ARTICLE, best_score=0.1, top_terms=[])
    return recorded(position, StoryStarted.event_type, payload.model_dump(mode="json"))


def assigned_event(position: int = 2, story: uuid.UUID = STORY) -> RecordedEvent:
    payload = ArticleAssignedToStory(
        story_id=story,
        clusterer_version="5",
        article_id=ARTICLE,
        role="canonical",
        started=True,
        score=1.0,
        shared_entities=[],
        top_terms=["bridge"],
    )
    return recorded(position, ArticleAssignedToStory.event_type, payload.model_dump(mode="json"))


def merged_v1_event(position: int = 3) -> RecordedEvent:
    """A StoriesMerged of schema version 1 (no reason): upcast as a bridge."""
    payload = StoriesMerged(
        story_id=STORY, clusterer_version="5", merged_story_ids=[OTHER], bridging_article_id=ARTICLE
    ).model_dump(mode="json")
    del payload["reason"]
    return recorded(position, StoriesMerged.event_type, payload)


def snap(
    articles: int = 3, sources: int = 2, peak: int = 1, headline: str | None = "Bridge\n  opens"
) -> story_feed.StorySnapshot:
    return story_feed.snapshot(
        {
            "story_id": STORY,
            "headline": headline,
            "article_count": articles,
            "source_count": sources,
            "sources": [f"Outlet {i}" for i in range(sources)],
            "languages": ["en"],
            "top_entities": ["Rotterdam"],
            "first_seen": AT,
            "last_seen": AT + timedelta(hours=2),
            "peak_hour_articles": peak,
            "projected_through": 9,
        }
    )


def test_checked_in_json_schema_equals_the_model() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == story_feed.feed_json_schema(), (
        "schemas/story_feed.v1.json is stale: regenerate with `newsflow schema feed > schemas/story_feed.v1.json`"
    )


def test_each_decision_becomes_one_record_and_other_events_none() -> None:
    s, a, m = started_event(), assigned_event(), merged_v1_event()
    records = [story_feed.decision_record(e) for e in (s, a, m)]
    assert [r.kind if r else None for r in records] == ["story_started", "article_assigned", "stories_merged"]
    assert [r.event_id if r else None for r in records] == [s.event_id, a.event_id, m.event_id]
    merged = records[2]
    assert isinstance(merged, story_feed.StoriesMergedRecord)
    assert merged.reason == "bridge" and merged.merged_story_ids == [OTHER] and merged.story_id == STORY
    text = ArticleCleaned.event_type
    assert story_feed.decision_record(recorded(4, text, {})) is None
    assert story_feed.decided_story(recorded(4, text, {})) is None


def test_a_record_built_again_from_the_same_event_has_the_same_id_and_bytes() -> None:
    event = assigned_event()
    first, again = story_feed.decision_record(event), story_feed.decision_record(event)
    assert first is not None and again is not None
    assert story_feed.encode(first) == story_feed.encode(again)
    other = story_feed.decision_record(assigned_event())
    assert other is not None and other.record_id != first.record_id


def test_the_last_decision_of_each_story_in_a_page_carries_its_update() -> None:
    s, a, elsewhere = started_event(1), assigned_event(2), assigned_event(3, story=OTHER)
    assert story_feed.story_changes([s, a, elsewhere], {}) == {STORY: a, OTHER: elsewhere}
    update = story_feed.story_updated(a, snap())
    assert update.event_id == a.event_id and update.position == 2 and update.projected_through == 9
    assert update.headline == "Bridge opens"  # one line
    assert update.record_id == story_feed.story_updated(a, snap(articles=5)).record_id
    assert update.record_id != story_feed.story_updated(s, snap()).record_id


def entities_event(position: int, article: uuid.UUID = ARTICLE) -> RecordedEvent:
    payload = {"article_id": str(article), "stage_version": "t", "model": "m", "language": "en", "supported": True}
    return recorded(position, ArticleEntitiesExtracted.event_type, {**payload, "entities": []})


def test_a_revision_of_an_article_already_in_a_story_updates_that_story_and_a_new_article_does_not() -> None:
    placed = {ARTICLE: (OTHER, 5)}
    before, decision, revision = entities_event(4), assigned_event(5, story=OTHER), entities_event(8)
    assert story_feed.story_changes([before], placed) == {}  # its decision follows (position 5)
    assert story_feed.story_changes([before, decision], placed) == {OTHER: decision}
    assert story_feed.story_changes([decision, revision], placed) == {OTHER: revision}
    assert story_feed.story_changes([entities_event(9, uuid.uuid4())], placed) == {}  # an article with no story


def test_rules_are_off_at_zero_and_named_with_their_threshold() -> None:
    assert story_feed.alert_rules() == []
    rules = story_feed.alert_rules(min_sources=3, min_articles_per_hour=5)
    assert [r.name for r in rules] == ["min_sources>=3", "min_articles_per_hour>=5"]


def test_an_alert_fires_at_its_threshold_once_per_story_and_rule() -> None:
    rules = story_feed.alert_rules(min_articles=3, min_sources=3, min_articles_per_hour=2)
    event = assigned_event()
    due = story_feed.due_alerts(event, snap(articles=3, sources=2, peak=2), rules, set())
    assert [(a.rule, a.value) for a in due] == [("min_articles>=3", 3), ("min_articles_per_hour>=2", 2)]
    assert story_feed.due_alerts(event, snap(articles=3, sources=2, peak=2), rules, {a.rule for a in due}) == []
    # The same story and rule give the same record id whichever event the alert fires on.
    later = story_feed.due_alerts(assigned_event(7), snap(articles=9, sources=2, peak=2), rules[:1], set())
    assert later[0].record_id == due[0].record_id and later[0].value == 9


def test_every_record_kind_validates_against_the_checked_in_schema() -> None:
    validator = jsonschema.Draft202012Validator(
        json.loads(SCHEMA_FILE.read_text()), format_checker=jsonschema.FormatChecker()
    )
    event = assigned_event()
    records = [story_feed.decision_record(e) for e in (started_event(), event, merged_v1_event())]
    records += [story_feed.story_updated(event, snap(headline=None))]
    records += story_feed.due_alerts(event, snap(), story_feed.alert_rules(min_articles=1), set())
    for r in records:
        assert r is not None
        validator.validate(json.loads(story_feed.encode(r)))
    bad = json.loads(story_feed.encode(records[0]))  # type: ignore[arg-type]
    bad["kind"] = "story_deleted"
    assert not validator.is_valid(bad)


def test_each_record_renders_as_one_line_naming_the_story() -> None:
    event = assigned_event()
    records = [story_feed.decision_record(e) for e in (started_event(), event, merged_v1_event())]
    records += [story_feed.story_updated(event, snap(articles=1, sources=1))]
    records += story_feed.due_alerts(event, snap(), story_feed.alert_rules(min_sources=2), set())
    lines = [story_feed.render(r) for r in records if r is not None]
    assert all(str(STORY) in line and "\n" not in line for line in lines)
    assert "story started by article" in lines[0] and "(canonical, score 1.000)" in lines[1]
    assert f"absorbed {OTHER} (bridge" in lines[2]
    assert "1 article, 1 source, en;" in lines[3] and lines[3].endswith("| Bridge opens")
    assert "ALERT min_sources>=2: 2 | Bridge opens" in lines[4]
