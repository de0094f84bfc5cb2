"""PostgreSQL stopped under the running daemon: every service waits, then resumes from what was stored."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
from structlog.testing import capture_logs

from conftest import settings_for, wait_until
from newsflow.adapters import kafka, postgres
from newsflow.adapters.embedded import EmbeddedBroker, EmbeddedPostgres
from newsflow.app.daemon import SERVICES, run_services
from newsflow.app.health import Health, read_all, readiness
from newsflow.app.publish import publish

BATCH = 8


def feed(tmp_path: Path, name: str, start: int) -> Path:
    path = tmp_path / f"{name}.jsonl"
    lines = [
        json.dumps(
            {
                "url": f"https://outage.example/{i}",
                "source": f"Wire {i % 3}",
                "fetched_at": "2022-09-15T10:00:00+00:00",
                "title": f"Harbour {i} reopens",
                "text": f"The harbour of town {i} reopened on Monday after a storm closed it for a week.",
            }
        )
        for i in range(start, start + BATCH)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def degraded(health: Health) -> bool:
    return health.readiness() == "degraded"


async def count(url: str, sql: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def reached(url: str, n: int, sql: str) -> bool:
    try:
        return await count(url, sql) >= n
    except (OSError, asyncpg.PostgresError):  # the server is still coming back
        return False


RECEIVED = "SELECT count(*) FROM newsflow.events WHERE type = 'ArticleReceived'"
ASSIGNED = "SELECT count(*) FROM newsflow.events WHERE type = 'ArticleAssignedToStory'"
PROJECTED = "SELECT count(*) FROM dashboard.articles"


async def test_the_daemon_waits_out_a_stopped_database_and_applies_everything_once(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pgdata")  # its own server: stopping it leaves the other tests' alone
    await asyncio.to_thread(pg.start)
    try:
        url = await pg.ensure_database("outage")
        settings = settings_for(broker, url)
        await kafka.ensure_topics(settings.kafka_bootstrap, [(settings.raw_topic, 2), (settings.dlq_topic, 1)])
        stop = asyncio.Event()
        with capture_logs() as logs:
            health = Health(tmp_path / "health.json")
            daemon = asyncio.create_task(run_services(settings, SERVICES, stop, health=health))
            await publish(settings.kafka_bootstrap, settings.raw_topic, [feed(tmp_path, "before", 0)], progress=False)
            await wait_until(lambda: reached(url, BATCH, PROJECTED), what="the first articles projected")
            assert health.readiness() == "ready"

            await asyncio.to_thread(pg.stop)
            await publish(
                settings.kafka_bootstrap, settings.raw_topic, [feed(tmp_path, "during", BATCH)], progress=False
            )
            await wait_until(lambda: degraded(health), what="health to say degraded")
            assert not daemon.done(), f"the daemon stopped during the outage: {daemon}"
            shown = read_all(tmp_path)["health.json"]
            assert readiness(shown) == "degraded" and "waiting_for_database" in str(shown["services"])
            await asyncio.to_thread(pg.start)

            await wait_until(lambda: reached(url, 2 * BATCH, PROJECTED), what="every article after the outage")
            await wait_until(lambda: reached(url, 2 * BATCH, ASSIGNED), what="every article in a story")
            assert not daemon.done()
            assert health.readiness() == "ready"
            assert any(s.outages for s in health.services.values()), "the outage is counted"
            pipeline = health.services["pipeline"]
            assert pipeline.outages == 1, "the pipeline had records to commit during the outage"
            assert pipeline.restarts == 0, "the pipeline waited in place, its consumer kept in the group"
            stop.set()
            await asyncio.wait_for(daemon, 60)
        conn = await postgres.connect(url)
        try:
            per_url = await conn.fetch(
                "SELECT payload->'message'->>'url' AS url, count(*) AS n FROM newsflow.events"
                " WHERE type = 'ArticleReceived' GROUP BY 1"
            )
            offsets = await conn.fetchval("SELECT sum(next_offset) FROM newsflow.consumer_offsets")
            assignments = await conn.fetchval(
                "SELECT count(DISTINCT payload->>'article_id') FROM newsflow.events WHERE type = 'ArticleAssignedToStory'"
            )
        finally:
            await conn.close()
        assert len(per_url) == 2 * BATCH and {r["n"] for r in per_url} == {1}, "each article once"
        assert offsets == 2 * BATCH
        assert assignments == 2 * BATCH, "one story decision per article"
        unavailable = {e.get("service") for e in logs if e["event"] == "db.unavailable"}
        assert unavailable, "the outage was logged"
    finally:
        await asyncio.to_thread(pg.stop)
