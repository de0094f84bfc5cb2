"""Read models: articles, naive stories and rejections, projected from the event log.

Everything written here derives from the events alone (no wall clock, no
randomness), so replaying the log from position 0 yields the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import asyncpg

from newsflow import entity_registry
from newsflow.domain import grouping
from newsflow.domain.events import (
    ArticleCleaned,
    ArticleDedupKeyed,
    ArticleDuplicateDetected,
    ArticleEntitiesExtracted,
    ArticleLanguageDetected,
    ArticleNormalized,
    ArticleRejected,
    ArticleRevised,
    ArticleText,
    RecordedEvent,
    registry,
)
from newsflow.domain.identity import story_id_for

STORIES_READER = "projection.stories"
STORY_WINDOW = timedelta(days=7)
LEAD_CHARS = 400


async def apply_events(conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
    for event in events:
        if event.type in (ArticleCleaned.event_type, ArticleNormalized.event_type):
            await _article_text(conn, event, registry.parse(event))  # type: ignore[arg-type]
        elif event.type == ArticleRevised.event_type:
            await _article_revised(conn, registry.parse(event))  # type: ignore[arg-type]
        elif event.type == ArticleDedupKeyed.event_type:
            await _article_keyed(conn, registry.parse(event))  # type: ignore[arg-type]
        elif event.type == ArticleLanguageDetected.event_type:
            await _article_language(conn, registry.parse(event))  # type: ignore[arg-type]
        elif event.type == ArticleEntitiesExtracted.event_type:
            await entity_registry.apply(conn, registry.parse(event))  # type: ignore[arg-type]
        elif event.type == ArticleDuplicateDetected.event_type:
            await _article_duplicate(conn, registry.parse(event))  # type: ignore[arg-type]
        elif event.type == ArticleRejected.event_type:
            await _article_rejected(conn, event, registry.parse(event))  # type: ignore[arg-type]


def _lead(text: str) -> str:
    if len(text) <= LEAD_CHARS:
        return text
    cut = text[:LEAD_CHARS].rsplit(" ", 1)[0]
    return cut + "…"


async def _article_text(
    conn: asyncpg.Connection, event: RecordedEvent, a: ArticleText
) -> None:
    seen_at = a.published_at or a.fetched_at
    existing = await conn.fetchrow(
        "SELECT story_id FROM projection.articles WHERE article_id = $1", a.article_id
    )
    story_id, score = (existing["story_id"], None) if existing else await _assign_story(conn, a, seen_at)
    await conn.execute(
        """
        INSERT INTO projection.articles (article_id, url, source, title, lead, word_count, language_hint,
            published_at, fetched_at, first_seen, revision, story_id, story_score, last_position)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $12, $13)
        ON CONFLICT (article_id) DO UPDATE SET
            title = EXCLUDED.title, lead = EXCLUDED.lead, word_count = EXCLUDED.word_count,
            language_hint = EXCLUDED.language_hint, published_at = EXCLUDED.published_at,
            fetched_at = EXCLUDED.fetched_at, last_position = EXCLUDED.last_position
        """,
        a.article_id, a.url, a.source, a.title, _lead(a.text), a.word_count, a.language_hint,
        a.published_at, a.fetched_at, seen_at, story_id, score, event.position,
    )


async def _assign_story(
    conn: asyncpg.Connection, a: ArticleText, seen_at: object
) -> tuple[object, float]:
    terms = grouping.key_terms(a.title, a.text)
    rows = await conn.fetch(
        """
        SELECT story_id::text AS story_id, terms FROM projection.stories
        WHERE terms && $1::text[] AND last_seen >= $2::timestamptz - $3::interval
              AND first_seen <= $2::timestamptz + $3::interval
        """,
        terms, seen_at, STORY_WINDOW,
    )
    chosen, score = grouping.choose_story(terms, [grouping.Candidate(r["story_id"], r["terms"]) for r in rows])
    if chosen is None:
        story_id = story_id_for(a.article_id)
        await conn.execute(
            """
            INSERT INTO projection.stories (story_id, headline, lead, first_seen, last_seen, article_count,
                sources, languages, terms, grouping)
            VALUES ($1, $2, $3, $4, $4, 1, ARRAY[$5::text], $6::text[], $7::text[], $8)
            """,
            story_id, a.title, _lead(a.text), seen_at, a.source,
            [a.language_hint] if a.language_hint else [], terms, grouping.GROUPING_VERSION,
        )
        return story_id, 1.0
    row = await conn.fetchrow("SELECT terms FROM projection.stories WHERE story_id = $1::uuid", chosen)
    await conn.execute(
        """
        UPDATE projection.stories SET
            first_seen = least(first_seen, $2), last_seen = greatest(last_seen, $2),
            article_count = article_count + 1,
            sources = CASE WHEN $3 = ANY(sources) THEN sources ELSE sources || $3::text END,
            languages = CASE WHEN $4::text IS NULL OR $4 = ANY(languages) THEN languages
                             ELSE languages || $4::text END,
            terms = $5::text[]
        WHERE story_id = $1::uuid
        """,
        chosen, seen_at, a.source, a.language_hint, grouping.merge_terms(row["terms"], terms),
    )
    return chosen, score


async def _article_revised(conn: asyncpg.Connection, r: ArticleRevised) -> None:
    await conn.execute("UPDATE projection.articles SET revision = $2 WHERE article_id = $1", r.article_id, r.revision)


async def _article_keyed(conn: asyncpg.Connection, k: ArticleDedupKeyed) -> None:
    # New keys are judged afresh: a DuplicateDetected event follows if the article still repeats one.
    await conn.execute(
        """
        UPDATE projection.articles SET
            duplicate_of = NULL, duplicate_of_url = NULL, duplicate_kind = NULL, duplicate_similarity = NULL
        WHERE article_id = $1
        """,
        k.article_id,
    )


async def _article_language(conn: asyncpg.Connection, d: ArticleLanguageDetected) -> None:
    await conn.execute(
        "UPDATE projection.articles SET language = $2, language_confidence = $3 WHERE article_id = $1",
        d.article_id, None if d.code == "und" else d.code, d.confidence,
    )


async def _article_duplicate(conn: asyncpg.Connection, d: ArticleDuplicateDetected) -> None:
    await conn.execute(
        """
        UPDATE projection.articles
        SET duplicate_of = $2, duplicate_of_url = $3, duplicate_kind = $4, duplicate_similarity = $5
        WHERE article_id = $1
        """,
        d.article_id, d.canonical_article_id, d.canonical_url, d.kind, d.similarity,
    )


async def _article_rejected(conn: asyncpg.Connection, event: RecordedEvent, r: ArticleRejected) -> None:
    cause = event.metadata.get("causation", {})
    await conn.execute(
        """
        INSERT INTO projection.rejections (position, reason, detail, topic, kafka_partition, kafka_offset,
            message_key, raw_size, rejected_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (position) DO NOTHING
        """,
        event.position, r.reason, r.detail, cause.get("topic"), cause.get("partition"), cause.get("offset"),
        r.key, r.raw_size, event.recorded_at,
    )
