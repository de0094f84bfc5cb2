"""PostgreSQL side of dedup: exact-key and LSH-band lookups, and registering an article's keys.

Called inside the append transaction, after lock_appends: appends are
serialized, so the first article to commit with a key is the canonical one
for every worker, and articles earlier in the same batch are already visible.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import structlog

from newsflow.domain import dedup, stages
from newsflow.domain.events import ArticleDuplicateDetected, ArticleEntitiesExtracted, NewEvent
from newsflow.domain.identity import ARTICLE_STREAM_PREFIX, article_stream

log = structlog.get_logger(__name__)

MAX_CANDIDATES = 200  # most band-sharing articles compared per lookup, most shared bands first


@dataclass(frozen=True)
class Duplicate:
    kind: str
    canonical_id: uuid.UUID
    canonical_url: str
    matched_id: uuid.UUID
    similarity: float
    containment: float | None


async def entities_by_exact_key(
    conn: asyncpg.Connection, exact_keys: list[str]
) -> dict[str, tuple[uuid.UUID, dict[str, object]]]:
    """For exact keys already stored: the first-seen article with that key and its latest entity results."""
    rows = await conn.fetch(
        """
        SELECT DISTINCT ON (d.exact_key) d.exact_key, d.article_id, e.payload
        FROM newsflow.dedup_articles d
        JOIN LATERAL (
            SELECT payload FROM newsflow.events
            WHERE stream_id = $2 || d.article_id::text AND type = $3
                  AND payload->>'failure' IS NULL
            ORDER BY stream_version DESC LIMIT 1
        ) AS e ON true
        WHERE d.exact_key = ANY($1::text[])
        ORDER BY d.exact_key, d.seen_seq
        """,
        list(set(exact_keys)),
        ARTICLE_STREAM_PREFIX,
        ArticleEntitiesExtracted.event_type,
    )
    return {r["exact_key"]: (r["article_id"], r["payload"]) for r in rows}


async def latest_entities(conn: asyncpg.Connection, article_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, object]]:
    """Each article's latest successful entity results."""
    rows = await conn.fetch(
        """
        SELECT DISTINCT ON (stream_id) payload FROM newsflow.events
        WHERE stream_id = ANY($1::text[]) AND type = $2 AND payload->>'failure' IS NULL
        ORDER BY stream_id, stream_version DESC
        """,
        [article_stream(a) for a in set(article_ids)],
        ArticleEntitiesExtracted.event_type,
    )
    return {uuid.UUID(r["payload"]["article_id"]): r["payload"] for r in rows}


async def find_duplicate(
    conn: asyncpg.Connection, article_id: uuid.UUID, key: dedup.DedupKey, before_seq: int | None = None
) -> Duplicate | None:
    """The earlier article this one repeats. ``before_seq`` limits "earlier" when re-keying stored articles."""
    before = before_seq if before_seq is not None else 2**62
    exact = await conn.fetchrow(
        """
        SELECT d.article_id, c.article_id AS canonical_id, c.url AS canonical_url
        FROM newsflow.dedup_articles d JOIN newsflow.dedup_articles c ON c.article_id = d.canonical_id
        WHERE d.exact_key = $1 AND d.article_id <> $2 AND d.seen_seq < $3
        ORDER BY d.seen_seq LIMIT 1
        """,
        key.exact_key,
        article_id,
        before,
    )
    if exact:
        return Duplicate("exact", exact["canonical_id"], exact["canonical_url"], exact["article_id"], 1.0, None)
    rows = await conn.fetch(
        """
        SELECT d.article_id, d.shingle_count, d.signature, d.seen_seq, c.article_id AS canonical_id,
               c.url AS canonical_url
        FROM (
            SELECT article_id, count(*) AS shared FROM newsflow.dedup_bands
            WHERE band_hash = ANY($1::bigint[]) AND article_id <> $2
            GROUP BY article_id ORDER BY shared DESC, article_id LIMIT $4
        ) AS b
        JOIN newsflow.dedup_articles d ON d.article_id = b.article_id
        JOIN newsflow.dedup_articles c ON c.article_id = d.canonical_id
        WHERE d.signature_version = $3 AND d.seen_seq < $5
        """,
        list(key.bands),
        article_id,
        dedup.SIGNATURE_VERSION,
        MAX_CANDIDATES,
        before,
    )
    best: tuple[float, int, asyncpg.Record, dedup.Similarity] | None = None
    for r in rows:
        sim = dedup.similarity(key.signature, key.shingle_count, r["signature"], r["shingle_count"])
        # The most similar wins; among equals the first seen, so the result does not depend on row order.
        if sim.near_duplicate and (best is None or (sim.jaccard, -r["seen_seq"]) > (best[0], best[1])):
            best = (sim.jaccard, -r["seen_seq"], r, sim)
    if best is None:
        return None
    _, _, r, sim = best
    return Duplicate("near", r["canonical_id"], r["canonical_url"], r["article_id"], sim.jaccard, sim.containment)


async def register(
    conn: asyncpg.Connection, article_id: uuid.UUID, url: str, key: dedup.DedupKey, duplicate: Duplicate | None
) -> None:
    """Store this version's keys. Only canonical articles add LSH bands.

    A duplicate's text is close to its canonical's, whose bands already find it;
    adding its bands too would grow the bucket of a story copied a thousand times
    by a thousand rows and make every lookup on it slower. The price: a copy of a
    copy that drifted away from the original is compared only with the original.
    """
    canonical = duplicate.canonical_id if duplicate else article_id
    await conn.execute(
        """
        INSERT INTO newsflow.dedup_articles
            (article_id, url, signature_version, exact_key, shingle_count, signature, canonical_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (article_id) DO UPDATE SET
            url = EXCLUDED.url, signature_version = EXCLUDED.signature_version, exact_key = EXCLUDED.exact_key,
            shingle_count = EXCLUDED.shingle_count, signature = EXCLUDED.signature,
            canonical_id = EXCLUDED.canonical_id
        """,
        article_id,
        url,
        dedup.SIGNATURE_VERSION,
        key.exact_key,
        key.shingle_count,
        key.signature,
        canonical,
    )
    await conn.execute("DELETE FROM newsflow.dedup_bands WHERE article_id = $1", article_id)
    if duplicate is None:
        await conn.execute(
            "INSERT INTO newsflow.dedup_bands (band_hash, article_id)"
            " SELECT DISTINCT unnest($1::bigint[]), $2::uuid ON CONFLICT DO NOTHING",
            list(key.bands),
            article_id,
        )


async def judge(
    conn: asyncpg.Connection,
    article_id: uuid.UUID,
    stream_id: str,
    url: str,
    key: dedup.DedupKey,
    keyed_event_id: uuid.UUID,
    before_seq: int | None = None,
) -> NewEvent | None:
    """Find what this article duplicates, register its keys, and say so as an event (None: it is canonical)."""
    found = await find_duplicate(conn, article_id, key, before_seq)
    await register(conn, article_id, url, key, found)
    if found is None:
        return None
    event = ArticleDuplicateDetected(
        article_id=article_id,
        stage_version=dedup.STAGE_VERSION,
        kind=found.kind,
        canonical_article_id=found.canonical_id,
        canonical_url=found.canonical_url,
        matched_article_id=found.matched_id,
        similarity=round(found.similarity, 4),
        containment=None if found.containment is None else round(found.containment, 4),
    )
    log.info(
        "article.duplicate",
        article_id=str(article_id),
        kind=found.kind,
        canonical=str(found.canonical_id),
        similarity=event.similarity,
    )
    return NewEvent.of(stream_id, event, stages.caused_by(keyed_event_id))
