"""Merged stories project as one, and time travel (`stories show --as-of`) still sees them apart."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from conftest import scalar
from newsflow.adapters import postgres
from newsflow.domain.events import ArticleAssignedToStory, ArticleCleaned, NewEvent, StoriesMerged, StoryStarted
from newsflow.domain.identity import article_stream, story_stream
from newsflow.readside import projections, story_history
from newsflow.readside.log_reader import LogReader

BASE = datetime(2024, 5, 1, 8, tzinfo=UTC)


def cleaned(article: uuid.UUID, i: int) -> NewEvent:
    payload = ArticleCleaned(
        article_id=article,
        stage_version="t",
        url=f"https://m.invalid/{i}",
        source=f"Outlet {i}",
        title=f"Title {i}",
        text=f"Body {i} about the bridge.",
        word_count=5,
        published_at=BASE + timedelta(hours=i),
        fetched_at=BASE + timedelta(hours=i),
        language_hint="en",
        input_kind="text",
        extractor=None,
        metadata={},
        removed=[],
        removed_counts={},
        chrome_candidates=[],
    )
    return NewEvent.of(article_stream(article), payload, {})


def started(story: uuid.UUID, article: uuid.UUID, best_score: float) -> NewEvent:
    payload = StoryStarted(
        story_id=story, clusterer_version="t", article_id=article, best_score=best_score, top_terms=["bridge"]
    )
    return NewEvent.of(story_stream(story), payload, {})


def assigned(story: uuid.UUID, article: uuid.UUID, first: bool) -> NewEvent:
    payload = ArticleAssignedToStory(
        story_id=story,
        clusterer_version="t",
        article_id=article,
        role="canonical",
        started=first,
        score=1.0 if first else 0.5,
        shared_entities=[],
        top_terms=["bridge"],
    )
    return NewEvent.of(story_stream(story), payload, {})


def merged(into: uuid.UUID, absorbed: uuid.UUID, bridging: uuid.UUID) -> NewEvent:
    payload = StoriesMerged(
        story_id=into,
        clusterer_version="t",
        merged_story_ids=[absorbed],
        bridging_article_id=bridging,
        reason="background",
    )
    return NewEvent.of(story_stream(into), payload, {})


async def test_merged_stories_project_as_one_and_time_travel_sees_them_apart(pool: asyncpg.Pool) -> None:
    articles = [uuid.uuid4() for _ in range(3)]
    a, b = uuid.uuid4(), uuid.uuid4()
    batches = [
        [cleaned(articles[0], 0), started(a, articles[0], 0.0), assigned(a, articles[0], True)],
        [cleaned(articles[1], 1), started(b, articles[1], 0.1), assigned(b, articles[1], True)],
        [cleaned(articles[2], 2), merged(b, a, articles[2]), assigned(b, articles[2], False)],
    ]
    cut: datetime | None = None
    for i, batch in enumerate(batches):
        async with pool.acquire() as conn, conn.transaction():
            await postgres.append(conn, batch)
            if i == 1:
                cut = await conn.fetchval("SELECT clock_timestamp()")
    await LogReader(projections.STORIES_READER, pool, projections.apply_events).catch_up()
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT story_id, article_count FROM projection.stories")
        assert [(r["story_id"], r["article_count"]) for r in rows] == [(b, 3)]
        assert await scalar(pool, "SELECT count(*) FROM projection.articles WHERE story_id = $1", b) == 3
        via_merged = await story_history.show(conn, a)
        assert via_merged["id"] == str(b) and via_merged["merged_from"] == [str(a)]
        assert via_merged["merges"] == [
            {"story_id": str(a), "reason": "background", "bridging_article_id": str(articles[2])}
        ]
        assert f"merged from: {a} (background)" in story_history.render(via_merged)
        reason = await conn.fetchval("SELECT reason FROM dashboard.story_merges WHERE merged_story_id = $1", a)
        assert reason == "background"
        assert cut is not None
        past = await story_history.show(conn, a, cut)
    assert past["id"] == str(a) and past["article_count"] == 1 and past["merged_from"] == []
