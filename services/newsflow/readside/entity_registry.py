"""The global entity registry: entities of all articles merged by name and alias, with their mentions.

A projection of ArticleEntitiesExtracted, applied by the projector in log
order. An article's entity resolves to a known entity when one of its keys
(``name_keys.registry_keys``: its folded name and aliases, then their spelling
keys) was claimed before by an entity of the same type ("SCO" in one article
finds "Shanghai Cooperation Organization" of an earlier one, "Vladimir
Poutine" finds "Vladimir Putin"); otherwise it starts a new entity. Keys are claimed first come, first
served, so replaying the log gives the same registry. A later version of an
article (revision, reprocessing) replaces that article's mentions.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from newsflow.domain.events import ArticleEntitiesExtracted, ExtractedEntity
from newsflow.domain.identity import entity_id_for
from newsflow.domain.name_keys import registry_keys


async def apply(conn: asyncpg.Connection, e: ArticleEntitiesExtracted) -> None:
    seen_at = await conn.fetchval(
        "SELECT coalesce(published_at, fetched_at) FROM articles WHERE article_id = $1", e.article_id
    )
    if seen_at is None:
        return  # no article row (it was rejected or never cleaned): nothing to attach mentions to
    previous = [
        r["entity_id"]
        for r in await conn.fetch(
            "DELETE FROM article_entities WHERE article_id = $1 RETURNING entity_id", e.article_id
        )
    ]
    touched: set[uuid.UUID] = set(previous)
    for entity in e.entities:
        entity_id = await _register(conn, e.article_id, entity, seen_at)
        if entity_id is not None:
            touched.add(entity_id)
    await conn.execute(
        """
        UPDATE entities e SET
            article_count = s.articles, mention_count = s.mentions
        FROM (
            SELECT t.id, count(ae.article_id) AS articles, coalesce(sum(ae.mentions), 0) AS mentions
            FROM unnest($1::uuid[]) AS t(id)
            LEFT JOIN article_entities ae ON ae.entity_id = t.id
            GROUP BY t.id
        ) AS s
        WHERE e.entity_id = s.id
        """,
        list(touched),
    )


async def _register(
    conn: asyncpg.Connection, article_id: uuid.UUID, entity: ExtractedEntity, seen_at: datetime
) -> uuid.UUID | None:
    """Resolve one of an article's entities in the registry (or start one) and record its mentions."""
    keys = registry_keys(entity.name, entity.aliases, entity.type)
    if not keys:
        return None
    known = await conn.fetchval(
        "SELECT entity_id FROM entity_aliases WHERE type = $1 AND alias_key = ANY($2::text[])"
        " ORDER BY array_position($2::text[], alias_key) LIMIT 1",
        entity.type,
        keys,
    )
    entity_id = known or entity_id_for(entity.type, keys[0])
    if known is None:
        await conn.execute(
            """
            INSERT INTO entities (entity_id, type, name, aliases, article_count, mention_count,
                first_seen, last_seen)
            VALUES ($1, $2, $3, '{}', 0, 0, $4, $4) ON CONFLICT (entity_id) DO NOTHING
            """,
            entity_id,
            entity.type,
            entity.name,
            seen_at,
        )
    await conn.execute(
        "INSERT INTO entity_aliases (type, alias_key, entity_id)"
        " SELECT $1, unnest($2::text[]), $3 ON CONFLICT DO NOTHING",
        entity.type,
        keys,
        entity_id,
    )
    await conn.execute(
        """
        INSERT INTO article_entities (article_id, entity_id, mentions, first_offset, seen_at)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (article_id, entity_id) DO UPDATE SET
            mentions = article_entities.mentions + EXCLUDED.mentions,
            first_offset = least(article_entities.first_offset, EXCLUDED.first_offset)
        """,
        article_id,
        entity_id,
        entity.count,
        entity.first_offset,
        seen_at,
    )
    await conn.execute(
        """
        UPDATE entities SET
            aliases = ARRAY(SELECT DISTINCT x FROM unnest(aliases || $2::text[]) AS x ORDER BY x),
            first_seen = least(first_seen, $3), last_seen = greatest(last_seen, $3)
        WHERE entity_id = $1
        """,
        entity_id,
        [entity.name, *entity.aliases],
        seen_at,
    )
    return entity_id
