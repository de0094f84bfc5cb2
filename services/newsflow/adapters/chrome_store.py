"""PostgreSQL side of per-source chrome learning (table newsflow.source_chrome_lines)."""

from __future__ import annotations

from collections import Counter

import asyncpg

from newsflow.adapters.postgres import lock_appends
from newsflow.domain.cleaning.learned_chrome import MIN_ARTICLES, LearnedChrome
from newsflow.domain.events import ArticleCleaned

_UPSERT = """
INSERT INTO newsflow.source_chrome_lines AS c (source, line_hash, articles, learned_seq)
SELECT s, h, n, CASE WHEN n >= $4 THEN nextval('newsflow.chrome_learned_seq') END
FROM unnest($1::text[], $2::text[], $3::int[]) AS t(s, h, n)
ON CONFLICT (source, line_hash) DO UPDATE SET
    articles = c.articles + EXCLUDED.articles,
    learned_seq = coalesce(
        c.learned_seq,
        CASE WHEN c.articles + EXCLUDED.articles >= $4 THEN nextval('newsflow.chrome_learned_seq') END
    )
"""


async def count_lines(conn: asyncpg.Connection, increments: Counter[tuple[str, str]]) -> None:
    """Add newly seen articles' line counts. Call inside the append transaction, after lock_appends."""
    if not increments:
        return
    rows = sorted(increments.items())  # a fixed order: concurrent upserts never deadlock on each other
    await conn.execute(
        _UPSERT, [s for (s, _), _ in rows], [h for (_, h), _ in rows], [n for _, n in rows], MIN_ARTICLES
    )


async def refresh(conn: asyncpg.Connection, learned: LearnedChrome) -> int:
    """Read the lines learned since ``learned.last_seq``; returns how many were new."""
    rows = await conn.fetch(
        "SELECT source, line_hash, learned_seq FROM newsflow.source_chrome_lines"
        " WHERE learned_seq > $1 ORDER BY learned_seq",
        learned.last_seq,
    )
    for r in rows:
        learned.add(r["source"], r["line_hash"], r["learned_seq"])
    return len(rows)


async def rebuild(conn: asyncpg.Connection) -> int:
    """Recompute the table from the event log; returns the number of learned lines."""
    async with conn.transaction():
        await lock_appends(conn)
        await conn.execute("TRUNCATE newsflow.source_chrome_lines")
        await conn.execute(
            """
            INSERT INTO newsflow.source_chrome_lines (source, line_hash, articles)
            SELECT f.source, h.line_hash, count(*)
            FROM (
                SELECT DISTINCT ON (stream_id) payload
                FROM newsflow.events WHERE type = $1
                ORDER BY stream_id, position
            ) AS first_cleaned,
            LATERAL (SELECT first_cleaned.payload->>'source' AS source) AS f,
            LATERAL (
                SELECT DISTINCT jsonb_array_elements_text(first_cleaned.payload->'chrome_candidates') AS line_hash
            ) AS h
            GROUP BY f.source, h.line_hash
            """,
            ArticleCleaned.event_type,
        )
        return int(
            await conn.fetchval(
                """
            WITH learned AS (
                UPDATE newsflow.source_chrome_lines SET learned_seq = nextval('newsflow.chrome_learned_seq')
                WHERE articles >= $1 RETURNING 1
            )
            SELECT count(*) FROM learned
            """,
                MIN_ARTICLES,
            )
        )
