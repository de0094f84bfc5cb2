"""`newsflow stories show ID [--as-of T]`: one story now, or as it stood at a past moment.

Now: read from the live projection. As of T: the events recorded up to T are
the truth of that moment, so the story is projected again from them, with the
projection's own code, into temporary tables of this session: the clusterer's
decisions up to T say which articles were in the story (following merges), and
only those articles' events up to T are replayed. Entity names are resolved
within the story's articles alone (the live registry resolves across all).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from newsflow.adapters import postgres
from newsflow.domain.clustering import follow_merges
from newsflow.domain.events import ArticleAssignedToStory, StoriesMerged, StoryStarted, registry
from newsflow.domain.identity import article_stream, story_stream
from newsflow.readside import projections
from newsflow.wording import counted

_DECISIONS = [StoryStarted.event_type, ArticleAssignedToStory.event_type, StoriesMerged.event_type]


class StoryNotFound(LookupError):
    pass


async def show(conn: asyncpg.Connection, story_id: uuid.UUID, as_of: datetime | None = None) -> dict[str, Any]:
    async with conn.transaction(readonly=as_of is None):
        if as_of is None:
            await conn.execute(f"SET LOCAL search_path TO {projections.SCHEMA}")
            return await _read(conn, await _surviving(conn, story_id), None)
        position = await postgres.position_at(conn, as_of)
        decisions = await conn.fetch(
            "SELECT position, type, payload FROM newsflow.events"
            " WHERE type = ANY($1::text[]) AND position <= $2 ORDER BY position",
            _DECISIONS,
            position,
        )
        merged_into: dict[str, str] = {}
        member_of: dict[str, str] = {}
        for d in decisions:
            if d["type"] == StoriesMerged.event_type:
                for m in d["payload"]["merged_story_ids"]:
                    merged_into[m] = d["payload"]["story_id"]
            elif d["type"] == ArticleAssignedToStory.event_type:
                member_of[d["payload"]["article_id"]] = d["payload"]["story_id"]

        target = follow_merges(merged_into, str(story_id))
        group = {s for s in {*member_of.values(), *merged_into} if follow_merges(merged_into, s) == target} | {target}
        members = [a for a, s in member_of.items() if follow_merges(merged_into, s) == target]
        if not members:
            raise StoryNotFound(f"story {story_id} had no articles at {as_of.isoformat()}")
        streams = [article_stream(uuid.UUID(a)) for a in members] + [story_stream(uuid.UUID(s)) for s in group]
        rows = await conn.fetch(
            f"SELECT {postgres.EVENT_COLUMNS} FROM newsflow.events"
            " WHERE stream_id = ANY($1::text[]) AND position <= $2 ORDER BY position",
            streams,
            position,
        )
        await projections.create_empty_tables(conn, None)
        await conn.execute("SET LOCAL search_path TO pg_temp")
        await projections.apply(conn, [registry.upcast(postgres.row_to_event(r)) for r in rows])
        return await _read(conn, uuid.UUID(target), as_of)


async def _surviving(conn: asyncpg.Connection, story_id: uuid.UUID) -> uuid.UUID:
    """The story that holds ``story_id``'s articles now (itself, unless it was merged into another)."""
    into = await conn.fetchval("SELECT into_story_id FROM story_merges WHERE merged_story_id = $1", story_id)
    return into or story_id


async def _read(conn: asyncpg.Connection, story_id: uuid.UUID, as_of: datetime | None) -> dict[str, Any]:
    """The story from the projection tables on the search path."""
    story = await conn.fetchrow("SELECT * FROM stories WHERE story_id = $1", story_id)
    if story is None:
        raise StoryNotFound(f"no story {story_id}")
    articles = await conn.fetch(
        """
        SELECT a.article_id, a.url, a.source, a.title, a.published_at, a.first_seen, a.language,
               a.story_role AS role, a.story_started AS started, a.story_score AS score,
               dashboard.story_why(a.story_role, a.story_started, a.story_score, a.story_shared_entities,
                                   a.story_top_terms, coalesce(c.url, a.story_duplicate_of::text)) AS why
        FROM articles a LEFT JOIN articles c ON c.article_id = a.story_duplicate_of
        WHERE a.story_id = $1 ORDER BY a.first_seen, a.article_id
        """,
        story_id,
    )
    timeline = await conn.fetch(
        "SELECT date_trunc('hour', first_seen) AS hour, count(*) AS articles FROM articles"
        " WHERE story_id = $1 GROUP BY 1 ORDER BY 1",
        story_id,
    )
    entities = await conn.fetch(
        """
        SELECT e.name, e.type, count(*) AS articles, sum(ae.mentions) AS mentions
        FROM articles a JOIN article_entities ae ON ae.article_id = a.article_id
        JOIN entities e ON e.entity_id = ae.entity_id
        WHERE a.story_id = $1 GROUP BY e.entity_id, e.name, e.type
        ORDER BY count(*) DESC, sum(ae.mentions) DESC, e.name LIMIT 15
        """,
        story_id,
    )
    merged = await conn.fetch(
        "SELECT merged_story_id, reason, bridging_article_id FROM story_merges WHERE into_story_id = $1"
        " ORDER BY position, merged_story_id",
        story_id,
    )
    return {
        "id": str(story_id),
        "as_of": as_of.isoformat() if as_of else None,
        "headline": story["headline"],
        "lead": story["lead"],
        "first_seen": _iso(story["first_seen"]),
        "last_seen": _iso(story["last_seen"]),
        "article_count": story["article_count"],
        "duplicate_count": story["duplicate_count"],
        "sources": list(story["sources"]),
        "languages": list(story["languages"]),
        "merged_from": [str(r["merged_story_id"]) for r in merged],
        "merges": [
            {
                "story_id": str(r["merged_story_id"]),
                "reason": r["reason"],
                "bridging_article_id": str(r["bridging_article_id"]),
            }
            for r in merged
        ],
        "timeline": [{"hour": _iso(r["hour"]), "articles": r["articles"]} for r in timeline],
        "entities": [dict(r) for r in entities],
        "articles": [
            {
                "id": str(a["article_id"]),
                "url": a["url"],
                "source": a["source"],
                "title": a["title"],
                "published_at": _iso(a["published_at"]),
                "first_seen": _iso(a["first_seen"]),
                "language": a["language"],
                "role": a["role"],
                "started": a["started"],
                "score": a["score"],
                "why": a["why"],
            }
            for a in articles
        ],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def render(story: dict[str, Any]) -> str:
    lines = [
        f"{story['headline']}",
        f"  story {story['id']}" + (f"  as of {story['as_of']}" if story["as_of"] else "  (now)"),
        f"  {counted(story['article_count'], 'article')} ({counted(story['duplicate_count'], 'duplicate')}) from "
        f"{counted(len(story['sources']), 'source')}, {story['first_seen']} … {story['last_seen']}",
        f"  sources: {', '.join(story['sources'])}   languages: {', '.join(story['languages']) or '-'}",
    ]
    if story["merges"]:
        lines.append("  merged from: " + ", ".join(f"{m['story_id']} ({m['reason']})" for m in story["merges"]))
    lines.append("  entities: " + ", ".join(f"{e['name']} ({e['articles']})" for e in story["entities"]))
    lines.append("  timeline (articles per hour):")
    lines.extend(f"    {t['hour'][:16]}  {'#' * min(t['articles'], 60)} {t['articles']}" for t in story["timeline"])
    lines.append("  articles (by publication time, else fetch time):")
    earliest = min((a["published_at"] for a in story["articles"] if a["published_at"]), default=None)
    for a in story["articles"]:
        marks = ["first seen here"] if a["started"] else []
        if earliest is not None and a["published_at"] == earliest:
            marks.append("earliest published")
        published = a["published_at"][:16] if a["published_at"] else "no date"
        lines.append(f"    {a['first_seen'][:16]}  published {published}  {a['source']:<20.20}  {a['title']}")
        lines.append(f"      {a['role']}: {a['why']}" + (f"  [{'; '.join(marks)}]" if marks else ""))
    lines.append(ROLES)
    return "\n".join(lines)


ROLES = (
    "  first seen here: the first of the story's articles newsflow processed (it started the story);\n"
    "  earliest published: the one whose own publication time is earliest.\n"
    "  canonical: the first copy of its text newsflow saw, scored against the story;"
    " duplicate: an exact or near copy of a canonical article (counted, not scored)."
)
