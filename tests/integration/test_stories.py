"""Stories end to end: the clusterer's decisions as events, the story views, rebuild and time travel.

Real broker, real PostgreSQL, the real pipeline and clusterer: the five seed
articles, then an exact copy of one of them from another outlet and an article
about an unrelated event.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from conftest import daemon_env, reaches, role_url, running_daemon, wait_until
from newsflow.adapters import postgres
from newsflow.adapters.embedded import EmbeddedPostgres
from newsflow.app.publish import publish
from newsflow.domain.events import (
    NewEvent,
)
from newsflow.domain.identity import article_id_for, article_stream
from newsflow.readside import projections, story_clusterer, story_history
from newsflow.readside.log_reader import LogReader
from newsflow.readside.rebuild import rebuild
from newsflow.samples import SEEDS
from newsflow.settings import Settings

ASSIGNED_SQL = "SELECT count(*) FROM newsflow.events WHERE type = 'ArticleAssignedToStory'"
PORT_STRIKE = (
    "Dock workers in Rotterdam ended a nine-day strike on Tuesday after unions and the port employers' "
    "association agreed on a wage increase of seven percent over two years. Container terminals at the "
    "Maasvlakte had been idle since the walkout began, and shipping lines diverted dozens of vessels to "
    "Antwerp and Hamburg. The FNV union said its members voted by a large majority to accept the offer, "
    "which also limits night shifts for older crane operators. Terminal operators expect the backlog of "
    "about forty thousand containers to clear within ten days. Exporters of flowers and vegetables, who "
    "lost refrigerated capacity during the strike, asked the port authority for compensation. Economists "
    "at ING estimated the stoppage cost the Dutch economy several hundred million euros."
)
COPY_URL = "https://wirecopy.invalid/putin-xi-meet"
STRIKE_URL = "https://harbour-news.invalid/rotterdam-dock-strike-ends"


def _later_messages() -> list[dict[str, object]]:
    """An exact copy of seed 000 from another outlet, and an unrelated story."""
    manifest = json.loads((SEEDS / "manifest.json").read_text())["files"]
    seed0 = sorted(manifest)[0]
    return [
        {
            "url": COPY_URL,
            "source": "Wire Copy",
            "fetched_at": "2022-09-15T19:00:00+00:00",
            "published_at": "2022-09-15T18:45:00+00:00",
            "text": (SEEDS / seed0).read_text(encoding="utf-8"),
        },
        {
            "url": STRIKE_URL,
            "source": "Harbour News",
            "fetched_at": "2022-09-20T12:00:00+00:00",
            "published_at": "2022-09-20T11:00:00+00:00",
            "title": "Rotterdam dock strike ends with wage deal",
            "text": PORT_STRIKE,
        },
    ]


async def _fill(settings: Settings, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """Seeds first (so the copy has a canonical to follow), then the later messages."""
    async with running_daemon(settings):
        await publish(settings.kafka_bootstrap, settings.raw_topic, [SEEDS], progress=False)
        await wait_until(lambda: reaches(pool, 5, ASSIGNED_SQL), what="5 story assignments")
    feed = tmp_path / "later.jsonl"
    feed.write_text("".join(json.dumps(m) + "\n" for m in _later_messages()))
    async with running_daemon(settings):
        await publish(settings.kafka_bootstrap, settings.raw_topic, [feed], progress=False)
        await wait_until(lambda: reaches(pool, 7, ASSIGNED_SQL), what="7 story assignments")
        await wait_until(
            lambda: reaches(pool, 7, "SELECT count(*) FROM projection.articles WHERE story_id IS NOT NULL"),
            what="7 articles in stories",
        )


async def _checksums(conn: asyncpg.Connection) -> dict[str, str]:
    return {
        t: await conn.fetchval(
            f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM projection.{t} x"
        )
        for t in projections.TABLES
    }


async def test_seeds_form_one_story_copies_follow_and_unrelated_news_starts_another(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await _fill(settings, pool, tmp_path)
    dash = await asyncpg.connect(role_url(settings.database_url, "newsflow_dashboard"))
    try:
        members = await dash.fetch("SELECT * FROM dashboard.story_articles ORDER BY first_seen")
        stories = {r["id"]: r for r in await dash.fetch("SELECT * FROM dashboard.stories")}
        timeline = await dash.fetch("SELECT * FROM dashboard.story_timeline")
        story_entities = await dash.fetch("SELECT * FROM dashboard.story_entities")
        sources = {r["source"]: r for r in await dash.fetch("SELECT * FROM dashboard.sources")}
        articles = await dash.fetch("SELECT id, story_id, story_role FROM dashboard.articles")
    finally:
        await dash.close()
    by_url = {m["url"]: m for m in members}
    seed_story = by_url[COPY_URL]["story_id"]
    assert len(members) == 7 and len(stories) == 2
    assert sum(m["story_id"] == seed_story for m in members) == 6
    assert by_url[STRIKE_URL]["story_id"] != seed_story and by_url[STRIKE_URL]["why"].startswith("started the story")
    # The preview of 2022-09-08 came first in the log order of publication? No: log order is Kafka order;
    # whichever seed came first started the story, and every other seed joined it with a reason.
    canonical = [m for m in members if m["story_id"] == seed_story and m["role"] == "canonical"]
    assert len(canonical) == 5 and sum(m["started"] for m in canonical) == 1
    for m in canonical:
        if not m["started"]:
            assert m["score"] > 0 and m["why"].startswith("score ") and m["shared_entities"]
    copy = by_url[COPY_URL]
    assert copy["role"] == "duplicate" and copy["duplicate_kind"] == "exact"
    assert copy["why"].startswith("duplicate of https://nsnewsonline.invalid/") and copy["why"].endswith(
        "(similarity 1.000)"
    )

    s = stories[seed_story]
    assert (s["article_count"], s["canonical_count"], s["duplicate_count"], s["source_count"]) == (6, 5, 1, 6)
    assert s["languages"] == ["en"] and {"Xi Jinping", "Vladimir Putin"} <= set(s["top_entities"][:4])
    assert s["first_seen"] == datetime(2022, 9, 8, 9, 0, tzinfo=UTC)
    assert s["headline"] in {c["title"] for c in canonical} and s["lead"]
    assert s["status"] == "stale"  # last article in 2022
    assert sum(t["articles"] for t in timeline if t["story_id"] == seed_story) == 6
    assert {(t["hour"].isoformat(), t["articles"]) for t in timeline if t["story_id"] == seed_story} >= {
        ("2022-09-08T09:00:00+00:00", 1)
    }
    assert any(e["name"] == "Xi Jinping" and e["articles"] == 6 for e in story_entities if e["story_id"] == seed_story)
    assert sources["Wire Copy"]["duplicate_rate"] == 1 and sources["Harbour News"]["stories"] == 1
    assert all(a["story_id"] is not None for a in articles)
    # psql shows each story on one line, while the stored lead keeps its paragraphs.
    assert all("\n" not in s["lead"] and "\n" not in s["headline"] for s in stories.values())
    assert await pool.fetchval("SELECT count(*) FROM projection.stories WHERE lead LIKE '%' || chr(10) || '%'") > 0


async def test_the_story_commands_say_what_each_column_and_mark_means(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await _fill(settings, pool, tmp_path)
    env = daemon_env(settings, tmp_path / "state")

    def newsflow(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "newsflow", *args], env=env, capture_output=True, text=True, timeout=60, check=True
        ).stdout

    listed = (await asyncio.to_thread(newsflow, "stories")).splitlines()
    assert listed[0].split() == ["story", "id", "articles", "sources", "last", "seen", "status", "headline"]
    assert len(listed) == 3 and all(line.split()[-1] for line in listed[1:])
    seed_story = next(line.split()[0] for line in listed[1:] if line.split()[1] == "6")
    shown = await asyncio.to_thread(newsflow, "stories", "show", seed_story)
    assert "6 articles (1 duplicate) from 6 sources" in shown
    assert shown.count("first seen here") == 2 and shown.count("earliest published") == 2  # the mark and the legend
    assert "canonical: the first copy of its text" in shown

    async with pool.acquire() as conn:
        starts = await conn.fetch("SELECT payload, stream_id FROM newsflow.events WHERE type = 'StoryStarted'")
        assigned = await conn.fetch("SELECT payload FROM newsflow.events WHERE type = 'ArticleAssignedToStory'")
    assert len(starts) == 2 and all(r["stream_id"] == f"story-{r['payload']['story_id']}" for r in starts)
    assert len({r["payload"]["article_id"] for r in assigned}) == 7  # each article decided exactly once


async def test_rebuild_equals_incremental_and_the_live_projector_goes_on(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await _fill(settings, pool, tmp_path)
    async with pool.acquire() as conn:
        incremental = await _checksums(conn)
        head = await postgres.head_position(conn)
        stories = await conn.fetchval("SELECT count(*) FROM projection.stories")
    result = await rebuild(pool, "stories", page=7)  # a page size unlike the projector's: boundaries must not matter
    async with pool.acquire() as conn:
        assert await _checksums(conn) == incremental
        assert await postgres.load_checkpoint(conn, projections.STORIES_READER) == result["position"] == head
        assert not await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'projection_rebuild'")
    assert result["articles"] == 7 and result["stories"] == stories >= 2
    feed = tmp_path / "more.jsonl"
    feed.write_text(
        json.dumps(
            {
                "url": "https://harbour-news.invalid/rotterdam-backlog",
                "source": "Harbour News",
                "fetched_at": "2022-09-21T12:00:00+00:00",
                "published_at": "2022-09-21T11:00:00+00:00",
                "title": "Rotterdam container backlog clears after dock strike",
                "text": PORT_STRIKE.replace("Tuesday", "Monday"),
            }
        )
        + "\n"
    )
    async with running_daemon(settings):
        await publish(settings.kafka_bootstrap, settings.raw_topic, [feed], progress=False)
        await wait_until(
            lambda: reaches(pool, 8, "SELECT count(*) FROM projection.articles WHERE story_id IS NOT NULL"),
            what="the next article projected after the rebuild",
        )


async def test_story_as_it_stood_before_the_copy_arrived(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await _fill(settings, pool, tmp_path)
    async with pool.acquire() as conn:
        copy_received = await conn.fetchval(
            "SELECT min(recorded_at) FROM newsflow.events WHERE stream_id = $1",
            article_stream(article_id_for(COPY_URL)),
        )
        story_id = await conn.fetchval("SELECT story_id FROM projection.articles WHERE url = $1", COPY_URL)
        now = await story_history.show(conn, story_id)
        before = await story_history.show(conn, story_id, copy_received - timedelta(microseconds=1))
        with pytest.raises(story_history.StoryNotFound):
            await story_history.show(conn, story_id, datetime(2000, 1, 1, tzinfo=UTC))
    assert now["article_count"] == 6 and now["duplicate_count"] == 1 and "Wire Copy" in now["sources"]
    assert before["article_count"] == 5 and before["duplicate_count"] == 0 and "Wire Copy" not in before["sources"]
    assert {a["url"] for a in now["articles"]} - {a["url"] for a in before["articles"]} == {COPY_URL}
    assert before["headline"] and before["entities"][0]["name"] in {"Xi Jinping", "Vladimir Putin"}
    assert next(a for a in now["articles"] if a["url"] == COPY_URL)["why"].startswith("duplicate of https://")


async def test_clusterer_restored_from_a_snapshot_decides_as_an_uninterrupted_one(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path, pg_server: EmbeddedPostgres
) -> None:
    settings = settings.model_copy(update={"cluster_snapshot_every": 2, "projection_batch": 5})
    await _fill(settings, pool, tmp_path)  # two daemon runs: the second restores the first's snapshot
    async with pool.acquire() as conn:
        snapshot = await conn.fetchrow("SELECT position, articles FROM newsflow.reader_snapshots")
        checkpoint = await postgres.load_checkpoint(conn, story_clusterer.READER)
        decided = await _decisions(conn)
        pipeline_events = await conn.fetch(
            f"SELECT {postgres.EVENT_COLUMNS} FROM newsflow.events WHERE stream_id LIKE 'article-%' ORDER BY position"
        )
    assert snapshot is not None and 0 < snapshot["position"] <= checkpoint and snapshot["articles"] >= 2
    # The same pipeline events in the same order, in a fresh database, clustered in one uninterrupted run.
    fresh_url = await pg_server.ensure_database(f"t_{uuid.uuid4().hex[:12]}")
    await postgres.migrate_url(fresh_url)
    fresh = await postgres.create_pool(fresh_url, size=2)
    try:
        async with fresh.acquire() as conn, conn.transaction():
            await postgres.append(
                conn,
                [
                    NewEvent(r["stream_id"], r["type"], r["schema_version"], r["payload"], r["metadata"], r["event_id"])
                    for r in pipeline_events
                ],
            )
        clusterer = story_clusterer.StoryClusterer(snapshot_every=10_000)
        await LogReader(story_clusterer.READER, fresh, clusterer.handle, page_size=1000).catch_up()
        async with fresh.acquire() as conn:
            uninterrupted = await _decisions(conn)
    finally:
        await fresh.close()
    assert len(decided) == 7 and uninterrupted == decided


async def _decisions(conn: asyncpg.Connection) -> dict[str, tuple[object, ...]]:
    rows = await conn.fetch("SELECT payload FROM newsflow.events WHERE type = 'ArticleAssignedToStory'")
    return {
        r["payload"]["article_id"]: tuple(
            r["payload"][k] for k in ("story_id", "role", "started", "score", "top_terms")
        )
        for r in rows
    }


TIANGONG = (
    "Tiangong-1, the Chinese space station launched in 2011, will fall back to Earth as its orbit decays. "
    "Engineers of the China Manned Space Agency track the station's altitude and expect most of its eight "
    "tonnes to burn up on reentry over the ocean, though some debris of the spacecraft may survive. "
)
BACKGROUND_FEED = [  # an explainer, then the reentry reports 15 months later (beyond the 365-day live window)
    {
        "url": "https://space-explainers.invalid/tiangong-1-not-out-of-control",
        "source": "Space Explainers",
        "fetched_at": "2016-09-21T10:00:00+00:00",
        "published_at": "2016-09-21T09:00:00+00:00",
        "title": "China's space station is not out of control, says its agency",
        "text": TIANGONG + "The agency said in 2016 that it had lost telemetry but that the station was stable and "
        "posed no danger; astronomers watching Tiangong-1 said it was tumbling slowly.",
    },
    {
        "url": "https://orbit-daily.invalid/tiangong-1-to-crash",
        "source": "Orbit Daily",
        "fetched_at": "2018-01-02T10:00:00+00:00",
        "published_at": "2018-01-02T09:00:00+00:00",
        "title": "Tiangong-1 space station will crash to Earth within weeks",
        "text": TIANGONG + "The European Space Agency now predicts the reentry for March, with a window of several "
        "weeks; the spacecraft is out of control and its debris could land anywhere.",
    },
    {
        "url": "https://skywatch.invalid/tiangong-1-reentry-date",
        "source": "Skywatch",
        "fetched_at": "2018-01-09T10:00:00+00:00",
        "published_at": "2018-01-09T09:00:00+00:00",
        "title": "When will Tiangong-1 fall? Space station reentry date still uncertain",
        "text": TIANGONG + "Trackers narrowed the reentry window of the falling space station to late March or "
        "early April; the European Space Agency updates its forecast of Tiangong-1 each week.",
    },
]


async def test_a_background_piece_older_than_the_live_window_is_merged_into_the_story_it_explains(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    feed = tmp_path / "background.jsonl"
    feed.write_text("".join(json.dumps(m) + "\n" for m in BACKGROUND_FEED))
    async with running_daemon(settings):
        await publish(settings.kafka_bootstrap, settings.raw_topic, [feed], progress=False)
        await wait_until(lambda: reaches(pool, 3, ASSIGNED_SQL), what="3 story assignments")
        await wait_until(lambda: reaches(pool, 1, "SELECT count(*) FROM projection.story_merges"), what="a merge")
    async with pool.acquire() as conn:
        merges = await conn.fetch("SELECT payload FROM newsflow.events WHERE type = 'StoriesMerged'")
        members = await conn.fetch("SELECT url, story_id FROM projection.articles")
        merged = await conn.fetchrow("SELECT * FROM dashboard.story_merges")
        (story,) = await conn.fetch("SELECT * FROM dashboard.stories")
    assert [m["payload"]["reason"] for m in merges] == ["background"]
    assert len({m["story_id"] for m in members}) == 1 and story["article_count"] == 3
    assert merged["reason"] == "background" and story["first_seen"] == datetime(2016, 9, 21, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        ("SELECT * FROM dashboard.stories ORDER BY last_seen DESC LIMIT 20", "stories_last_seen"),
        ("SELECT * FROM dashboard.stories WHERE last_seen >= now() - interval '1 day'", "stories_last_seen"),
        ("SELECT * FROM dashboard.story_articles WHERE story_id = $1 ORDER BY first_seen", "articles_story_seen"),
        ("SELECT * FROM dashboard.story_timeline WHERE story_id = $1", "articles_story_seen"),
        ("SELECT * FROM dashboard.story_entities WHERE story_id = $1", "articles_story_seen"),
        ("SELECT * FROM dashboard.entity_daily WHERE name = 'Xi Jinping'", "entities_name"),
        (
            "SELECT * FROM dashboard.entity_mentions WHERE entity_id = $1 ORDER BY seen_at",
            "article_entities_entity_time",
        ),
        ("SELECT * FROM dashboard.articles ORDER BY first_seen DESC LIMIT 50", "articles_first_seen"),
    ],
)
async def test_documented_dashboard_queries_can_use_their_indexes(pool: asyncpg.Pool, sql: str, index: str) -> None:
    """With sequential scans priced out, each documented query's plan must reach for its index.

    (On a small table the planner rightly prefers a sequential scan; what this
    checks is that the index matches the query's shape, so it is used at scale.)
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        args = [uuid.uuid4()] if "$1" in sql else []
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", *args))
    assert index in plan, plan
