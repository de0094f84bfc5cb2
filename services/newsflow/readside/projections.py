"""Read models projected from the event log: articles, stories, rejections and the entity registry.

Everything written here derives from the events alone (no wall clock, no
randomness), so replaying the log from position 0 yields the same rows. The SQL
names tables without a schema: the live projector runs with ``search_path`` set
to ``projection``; a rebuild (``rebuild.py``) points it at fresh tables, and
time travel (``story_history.py``) at temporary ones, with the same code.

Story membership comes from the clusterer's decisions (``story_clusterer.py``);
a story row's aggregates (counts, sources, languages, representative headline,
top entities) are recomputed from its member articles once per page for every
story the page touched.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from newsflow.domain.events import (
    ArticleAssignedToStory,
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
    StoriesMerged,
    StoryStarted,
    registry,
)
from newsflow.readside import entity_registry

STORIES_READER = "projection.stories"
SCHEMA = "projection"
# Every table the stories projection owns, in an order that rebuilds can copy in.
TABLES = ("articles", "stories", "story_merges", "rejections", "entities", "entity_aliases", "article_entities")
LEAD_CHARS = 400
TOP_ENTITIES = 10


async def create_empty_tables(conn: asyncpg.Connection, schema: str | None) -> None:
    """Empty tables shaped like the live ones: in ``schema``, or temporary ones for this transaction (None)."""
    for table in TABLES:
        target, suffix = (f"{schema}.{table}", "") if schema else (table, " ON COMMIT DROP")
        kind = "TABLE" if schema else "TEMPORARY TABLE"
        await conn.execute(f"CREATE {kind} {target} (LIKE {SCHEMA}.{table} INCLUDING ALL){suffix}")


async def apply_events(conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
    """LogReader handler of the live projection (tables in the ``projection`` schema)."""
    await conn.execute(f"SET LOCAL search_path TO {SCHEMA}")
    await apply(conn, events)


async def apply(conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
    """Apply events to the projection tables found on the connection's search_path."""
    touched_stories: set[uuid.UUID] = set()
    touched_articles: set[uuid.UUID] = set()
    for event in events:
        t = event.type
        if t in (ArticleCleaned.event_type, ArticleNormalized.event_type):
            a: ArticleText = registry.parse(event)  # type: ignore[assignment]
            await _article_text(conn, event, a)
            touched_articles.add(a.article_id)
        elif t == ArticleRevised.event_type:
            await _article_revised(conn, registry.parse(event))  # type: ignore[arg-type]
        elif t == ArticleDedupKeyed.event_type:
            await _article_keyed(conn, registry.parse(event))  # type: ignore[arg-type]
        elif t == ArticleLanguageDetected.event_type:
            d: ArticleLanguageDetected = registry.parse(event)  # type: ignore[assignment]
            await _article_language(conn, d)
            touched_articles.add(d.article_id)
        elif t == ArticleEntitiesExtracted.event_type:
            e: ArticleEntitiesExtracted = registry.parse(event)  # type: ignore[assignment]
            await entity_registry.apply(conn, e)
            touched_articles.add(e.article_id)
        elif t == ArticleDuplicateDetected.event_type:
            await _article_duplicate(conn, registry.parse(event))  # type: ignore[arg-type]
        elif t == ArticleRejected.event_type:
            await _article_rejected(conn, event, registry.parse(event))  # type: ignore[arg-type]
        elif t == StoryStarted.event_type:
            await _story_started(conn, event, registry.parse(event))  # type: ignore[arg-type]
        elif t == ArticleAssignedToStory.event_type:
            assigned: ArticleAssignedToStory = registry.parse(event)  # type: ignore[assignment]
            await _article_assigned(conn, event, assigned)
            touched_stories.add(assigned.story_id)
        elif t == StoriesMerged.event_type:
            merged: StoriesMerged = registry.parse(event)  # type: ignore[assignment]
            await _stories_merged(conn, event, merged)
            touched_stories.add(merged.story_id)
    if touched_articles:
        rows = await conn.fetch(
            "SELECT DISTINCT story_id FROM articles WHERE article_id = ANY($1::uuid[]) AND story_id IS NOT NULL",
            list(touched_articles),
        )
        touched_stories.update(r["story_id"] for r in rows)
    for story_id in sorted(touched_stories):
        await _refresh_story(conn, story_id)


def _lead(text: str) -> str:
    if len(text) <= LEAD_CHARS:
        return text
    cut = text[:LEAD_CHARS].rsplit(" ", 1)[0]
    return cut + "…"


async def _article_text(conn: asyncpg.Connection, event: RecordedEvent, a: ArticleText) -> None:
    await conn.execute(
        """
        INSERT INTO articles (article_id, url, source, title, lead, word_count, language_hint,
            published_at, fetched_at, first_seen, revision, last_position)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11)
        ON CONFLICT (article_id) DO UPDATE SET
            title = EXCLUDED.title, lead = EXCLUDED.lead, word_count = EXCLUDED.word_count,
            language_hint = EXCLUDED.language_hint, published_at = EXCLUDED.published_at,
            fetched_at = EXCLUDED.fetched_at, last_position = EXCLUDED.last_position
        """,
        a.article_id,
        a.url,
        a.source,
        a.title,
        _lead(a.text),
        a.word_count,
        a.language_hint,
        a.published_at,
        a.fetched_at,
        a.published_at or a.fetched_at,
        event.position,
    )


async def _article_revised(conn: asyncpg.Connection, r: ArticleRevised) -> None:
    await conn.execute("UPDATE articles SET revision = $2 WHERE article_id = $1", r.article_id, r.revision)


async def _article_keyed(conn: asyncpg.Connection, k: ArticleDedupKeyed) -> None:
    # New keys are judged afresh: a DuplicateDetected event follows if the article still repeats one.
    await conn.execute(
        """
        UPDATE articles SET
            duplicate_of = NULL, duplicate_of_url = NULL, duplicate_kind = NULL, duplicate_similarity = NULL
        WHERE article_id = $1
        """,
        k.article_id,
    )


async def _article_language(conn: asyncpg.Connection, d: ArticleLanguageDetected) -> None:
    await conn.execute(
        "UPDATE articles SET language = $2, language_confidence = $3 WHERE article_id = $1",
        d.article_id,
        None if d.code == "und" else d.code,
        d.confidence,
    )


async def _article_duplicate(conn: asyncpg.Connection, d: ArticleDuplicateDetected) -> None:
    await conn.execute(
        """
        UPDATE articles
        SET duplicate_of = $2, duplicate_of_url = $3, duplicate_kind = $4, duplicate_similarity = $5
        WHERE article_id = $1
        """,
        d.article_id,
        d.canonical_article_id,
        d.canonical_url,
        d.kind,
        d.similarity,
    )


async def _article_rejected(conn: asyncpg.Connection, event: RecordedEvent, r: ArticleRejected) -> None:
    cause = event.metadata.get("causation", {})
    await conn.execute(
        """
        INSERT INTO rejections (position, reason, detail, source, topic, kafka_partition, kafka_offset,
            message_key, raw_size, rejected_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        ON CONFLICT (position) DO NOTHING
        """,
        event.position,
        r.reason,
        r.detail,
        r.source,
        cause.get("topic"),
        cause.get("partition"),
        cause.get("offset"),
        r.key,
        r.raw_size,
        event.recorded_at,
    )


async def _story_started(conn: asyncpg.Connection, event: RecordedEvent, s: StoryStarted) -> None:
    await conn.execute(
        """
        INSERT INTO stories (story_id, clusterer_version, started_position, last_position)
        VALUES ($1, $2, $3, $3) ON CONFLICT (story_id) DO NOTHING
        """,
        s.story_id,
        s.clusterer_version,
        event.position,
    )


async def _article_assigned(conn: asyncpg.Connection, event: RecordedEvent, a: ArticleAssignedToStory) -> None:
    await conn.execute(
        """
        UPDATE articles SET story_id = $2, story_role = $3, story_started = $4, story_score = $5,
            story_shared_entities = $6, story_top_terms = $7, story_duplicate_of = $8, story_position = $9
        WHERE article_id = $1
        """,
        a.article_id,
        a.story_id,
        a.role,
        a.started,
        a.score,
        a.shared_entities,
        a.top_terms,
        a.duplicate_of,
        event.position,
    )


async def _stories_merged(conn: asyncpg.Connection, event: RecordedEvent, m: StoriesMerged) -> None:
    await conn.execute(
        "INSERT INTO story_merges (merged_story_id, into_story_id, bridging_article_id, position, reason)"
        " SELECT unnest($1::uuid[]), $2, $3, $4, $5 ON CONFLICT DO NOTHING",
        m.merged_story_ids,
        m.story_id,
        m.bridging_article_id,
        event.position,
        m.reason,
    )
    await conn.execute(
        "UPDATE story_merges SET into_story_id = $2 WHERE into_story_id = ANY($1::uuid[])",
        m.merged_story_ids,
        m.story_id,
    )
    await conn.execute(
        "UPDATE articles SET story_id = $2 WHERE story_id = ANY($1::uuid[])", m.merged_story_ids, m.story_id
    )
    await conn.execute("DELETE FROM stories WHERE story_id = ANY($1::uuid[])", m.merged_story_ids)
    await conn.execute(
        "UPDATE stories SET last_position = greatest(last_position, $2) WHERE story_id = $1", m.story_id, event.position
    )


async def _refresh_story(conn: asyncpg.Connection, story_id: uuid.UUID) -> None:
    """Recompute a story's aggregates from its member articles.

    The representative article (headline, lead) is the canonical member that
    matched the story best when it joined; a story of one article shows that one.
    """
    await conn.execute(
        """
        WITH m AS (SELECT * FROM articles WHERE story_id = $1),
        rep AS (
            SELECT article_id, title, lead FROM m WHERE story_role = 'canonical'
            ORDER BY story_started, story_score DESC NULLS LAST, first_seen, article_id LIMIT 1
        ),
        ents AS (
            SELECT e.name, count(*) AS articles, sum(ae.mentions) AS mentions FROM m
            JOIN article_entities ae ON ae.article_id = m.article_id
            JOIN entities e ON e.entity_id = ae.entity_id
            GROUP BY e.entity_id, e.name
            ORDER BY count(*) DESC, sum(ae.mentions) DESC, e.name
            LIMIT $2
        ),
        agg AS (
            SELECT min(first_seen) AS first_seen, max(first_seen) AS last_seen, count(*) AS article_count,
                   count(*) FILTER (WHERE story_role = 'canonical') AS canonical_count,
                   count(*) FILTER (WHERE story_role = 'duplicate') AS duplicate_count,
                   count(DISTINCT source) AS source_count,
                   coalesce(array_agg(DISTINCT source ORDER BY source), '{}') AS sources,
                   coalesce(array_agg(DISTINCT language ORDER BY language)
                            FILTER (WHERE language IS NOT NULL), '{}') AS languages,
                   max(story_position) AS last_decision
            FROM m
        )
        UPDATE stories s SET
            headline = rep.title, lead = rep.lead, representative_article_id = rep.article_id,
            first_seen = agg.first_seen, last_seen = agg.last_seen, article_count = agg.article_count,
            canonical_count = agg.canonical_count, duplicate_count = agg.duplicate_count,
            source_count = agg.source_count, sources = agg.sources, languages = agg.languages,
            top_entities = coalesce(
                (SELECT array_agg(name ORDER BY articles DESC, mentions DESC, name) FROM ents), '{}'),
            last_position = greatest(s.last_position, agg.last_decision)
        FROM agg LEFT JOIN rep ON true
        WHERE s.story_id = $1
        """,
        story_id,
        TOP_ENTITIES,
    )
