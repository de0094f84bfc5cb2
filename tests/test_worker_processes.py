"""`newsflow run --workers N`: N pipeline processes share the partitions of one consumer group."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg

from conftest import scalar, wait_until
from newsflow.adapters import kafka
from newsflow.daemon import run_services
from newsflow.publisher import publish
from newsflow.settings import Settings

PARAGRAPH = "Harbour cranes stood still as dock workers and terminal operators negotiated through the night. "
WORKERS_SQL = "SELECT count(DISTINCT metadata->>'worker') FROM newsflow.events WHERE type = 'ArticleReceived'"


async def test_two_pipeline_processes_share_the_stream_and_apply_each_message_once(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"batch_max_records": 20})
    await kafka.ensure_topics(settings.kafka_bootstrap, [(settings.raw_topic, 4), (settings.dlq_topic, 1)])
    stop = asyncio.Event()
    daemon = asyncio.create_task(run_services(settings, ("pipeline",), stop, pipeline_processes=2))
    published = 0
    try:
        # Keep publishing until both processes have applied records: the child joins the group a little later.
        for round_ in range(60):
            feed = tmp_path / f"round-{round_}.jsonl"
            feed.write_text("".join(
                json.dumps({"url": f"https://harbour.invalid/{round_}/{i}", "source": f"outlet-{i % 3}",
                            "fetched_at": "2022-09-20T10:00:00+00:00",
                            "text": f"Item {round_}-{i}\n\n" + PARAGRAPH * 3}) + "\n"
                for i in range(20)
            ))
            published += await publish(settings.kafka_bootstrap, settings.raw_topic, [feed], progress=False)
            await asyncio.sleep(0.5)
            if await scalar(pool, WORKERS_SQL) >= 2:
                break
        assert await scalar(pool, WORKERS_SQL) == 2, "the second pipeline process never applied a record"
        await wait_until(
            lambda: _all_received(pool, published), timeout_s=90, what=f"{published} articles received"
        )
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 60)
    async with pool.acquire() as conn:
        received = await conn.fetchval("SELECT count(*) FROM newsflow.events WHERE type = 'ArticleReceived'")
        distinct = await conn.fetchval(
            "SELECT count(DISTINCT (metadata->'causation'->>'partition', metadata->'causation'->>'offset'))"
            " FROM newsflow.events WHERE type = 'ArticleReceived'"
        )
    assert received == distinct == published


async def _all_received(pool: asyncpg.Pool, n: int) -> bool:
    return await scalar(pool, "SELECT count(*) FROM newsflow.events WHERE type = 'ArticleReceived'") >= n
