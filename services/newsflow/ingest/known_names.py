"""The known-name pass of the entity stage, kept up to date with the entity registry.

The pass reads ``projection.entities`` (what the projector has applied so
far) at most every ``REFRESH_S`` seconds, and only when the projector has
moved since (its checkpoint), and builds its automaton in the pipeline
process: matching is one pass over a text (about 0.25 ms for an article),
cheaper than shipping the names to the stage workers. Building costs about
18 µs of CPU per spelling (0.5 s for 29,000), so the pass covers the
``MAX_ENTITIES`` most-named entities.
What the registry knew when an article was read is what its entity event
records; a replay of the log reads that event, never the registry of the day.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from newsflow.domain import known_names
from newsflow.readside.projections import STORIES_READER

REFRESH_S = 60.0
# An entity seen in one article only may be that article's noise (a headline fragment, a name misread).
MIN_ARTICLES = 2
MAX_ENTITIES = 50_000


class KnownNamesCache:
    def __init__(self, pool: asyncpg.Pool, min_articles: int = MIN_ARTICLES, refresh_s: float = REFRESH_S) -> None:
        self.pool = pool
        self.min_articles = min_articles
        self.refresh_s = refresh_s
        self._current: known_names.KnownNames | None = None
        self._position: int | None = None  # the projector's checkpoint the current pass was built at
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    async def current(self) -> known_names.KnownNames:
        """The pass over the registry as read at most ``refresh_s`` ago."""
        async with self._lock:
            if self._current is None or time.monotonic() - self._checked_at >= self.refresh_s:
                self._checked_at = time.monotonic()
                async with self.pool.acquire() as conn:
                    position = await conn.fetchval(
                        "SELECT position FROM newsflow.checkpoints WHERE name = $1", STORIES_READER
                    )
                    if self._current is None or position != self._position:
                        self._current = await self._load(conn, position)
                        self._position = position
            return self._current

    async def _load(self, conn: asyncpg.Connection, position: int | None) -> known_names.KnownNames:
        rows = await conn.fetch(
            "SELECT name, type, aliases FROM projection.entities WHERE article_count >= $1"
            " ORDER BY article_count DESC, first_seen, entity_id LIMIT $2",
            self.min_articles,
            MAX_ENTITIES,
        )
        names = [(r["name"], r["type"], r["aliases"]) for r in rows]
        return await asyncio.to_thread(known_names.from_rows, names, f"registry@{position or 0}")
