"""French, Spanish and German reports of the seeds' story through the real pipeline land on the English
reports' registry entities (real broker, real PostgreSQL, the real models)."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from conftest import reaches, running_daemon, wait_until
from multilingual_reports import REPORTS
from newsflow.app.publish import publish
from newsflow.app.reprocess import reprocess
from newsflow.ingest.stage_runner import StageRunner
from newsflow.samples import SEEDS
from newsflow.settings import Settings

ARTICLES_SQL = "SELECT count(*) FROM dashboard.articles"
KNOWN_SQL = "SELECT count(*) FROM projection.entities WHERE article_count >= 2"
WITH_MENTIONS_SQL = "SELECT count(DISTINCT article_id) FROM projection.article_entities"


async def test_reports_in_other_languages_get_entities_on_the_english_registry_entities(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    reports = REPORTS["reports"]
    feed = tmp_path / "reports.jsonl"
    feed.write_text(
        "".join(
            json.dumps(
                {
                    "url": r["url"],
                    "source": r["source"],
                    "fetched_at": "2022-09-15T18:00:00+00:00",
                    "title": r["title"],
                    "text": r["text"],
                },
                ensure_ascii=False,
            )
            + "\n"
            for r in reports
        )
    )
    async with running_daemon(settings):
        assert await publish(settings.kafka_bootstrap, settings.raw_topic, [SEEDS], progress=False) == 5
        # The known-name pass reads the registry: the English reports' entities are in it first.
        await wait_until(lambda: reaches(pool, 5, WITH_MENTIONS_SQL), what="the seeds' entities registered")
        await wait_until(lambda: reaches(pool, 20, KNOWN_SQL), what="entities of two seeds or more")
        assert await publish(settings.kafka_bootstrap, settings.raw_topic, [feed], progress=False) == 3
        await wait_until(lambda: reaches(pool, 8, ARTICLES_SQL), what="8 articles")
        await wait_until(lambda: reaches(pool, 8, WITH_MENTIONS_SQL), what="every report's entities registered")
    runner = StageRunner(workers=1, timeout_s=30, memory_mb=0)
    try:  # the stage run again: a language with no model gets the known-name pass here too
        assert await reprocess(pool, runner, "entities") == 8
    finally:
        runner.close()

    async with pool.acquire() as conn:
        for r in reports:
            article = await conn.fetchrow(
                "SELECT id AS article_id, language FROM dashboard.articles WHERE url = $1", r["url"]
            )
            assert article["language"] == r["language"]
            runs = await conn.fetch(
                "SELECT payload FROM newsflow.events WHERE type = 'ArticleEntitiesExtracted'"
                " AND payload->>'article_id' = $1 ORDER BY position",
                str(article["article_id"]),
            )
            assert len(runs) == 2  # the pipeline's, then the reprocessed one
            expected_model = "fr_core_news_sm@3.8.0" if r["language"] == "fr" else "known-names@1"
            for run in runs:
                event = run["payload"]
                assert event["supported"] is True and event["entities"], (r["language"], event)
                assert event["model"].startswith(expected_model), event["model"]
            assert runs[0]["payload"]["entities"] == runs[1]["payload"]["entities"]
            names = {
                m["name"]
                for m in await conn.fetch(
                    "SELECT name FROM dashboard.entity_mentions WHERE article_id = $1", article["article_id"]
                )
            }
            missing = set(r["same_entities_as_english"]) - names
            assert not missing, (r["language"], missing, names)
        registry = {
            (e["name"], e["type"]): e
            for e in await conn.fetch("SELECT name, type, article_count, aliases FROM dashboard.entities")
        }
    putin = registry[("Vladimir Putin", "person")]
    assert putin["article_count"] == 8
    assert {"Vladimir Poutine", "Poutine", "Vladímir Putin"} <= set(putin["aliases"])
    assert registry[("Uzbekistan", "place")]["article_count"] == 7  # "Usbekistan" is new to the German pass
    assert {"Ouzbékistan", "Uzbekistán"} <= set(registry[("Uzbekistan", "place")]["aliases"])
    assert not any(name in {n for n, _ in registry} for name in ("Vladimir Poutine", "Ouzbékistan", "Samarcande"))
