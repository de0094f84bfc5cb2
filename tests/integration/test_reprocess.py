"""Reprocessing a stage appends new events, keeps the old ones, and the views follow the latest."""

from __future__ import annotations

import datetime as dt

import asyncpg

from conftest import reaches, running_daemon, scalar, wait_until
from newsflow.app.publish import publish
from newsflow.app.reprocess import reprocess
from newsflow.ingest.stage_runner import StageRunner
from newsflow.samples import SEEDS
from newsflow.settings import Settings

COUNT = "SELECT count(*) FROM newsflow.events WHERE type = $1"


async def test_reprocessed_stages_append_and_views_follow_the_latest(settings: Settings, pool: asyncpg.Pool) -> None:
    async with running_daemon(settings):
        await publish(settings.kafka_bootstrap, settings.raw_topic, [SEEDS], progress=False)
        await wait_until(
            lambda: reaches(pool, 5, "SELECT count(*) FROM dashboard.entity_mentions WHERE name = 'Vladimir Putin'"),
            what="entities of 5 articles",
        )
        runner = StageRunner(workers=2, timeout_s=30, memory_mb=0)
        try:
            await runner.start()
            assert await reprocess(pool, runner, "entities") == 5
            assert await reprocess(pool, runner, "language") == 5
            assert await reprocess(pool, runner, "clean") == 5
            future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
            assert await reprocess(pool, runner, "language", since=future) == 0
        finally:
            runner.close()
        head = await scalar(pool, "SELECT max(position) FROM newsflow.events")
        await wait_until(
            lambda: reaches(pool, head, "SELECT position FROM newsflow.checkpoints WHERE name = 'projection.stories'"),
            what="projection caught up",
        )
    for event_type in ("ArticleEntitiesExtracted", "ArticleLanguageDetected", "ArticleCleaned"):
        assert await scalar(pool, COUNT, event_type) == 10, f"old {event_type} events stay, new ones follow"
    async with pool.acquire() as conn:
        putin = await conn.fetchrow("SELECT * FROM dashboard.entities WHERE name = 'Vladimir Putin'")
        articles = await conn.fetch("SELECT revision, language FROM dashboard.articles")
        tagged = await conn.fetchval("SELECT count(*) FROM newsflow.events WHERE metadata ? 'reprocess'")
    assert putin["article_count"] == 5, "mentions are replaced by the latest run, not added"
    assert all(a["revision"] == 1 and a["language"] == "en" for a in articles), "reprocessing is not a revision"
    assert tagged == 15
