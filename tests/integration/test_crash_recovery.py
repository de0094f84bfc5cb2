"""A worker killed with SIGKILL mid-stream, then restarted: every message accounted for exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg

from conftest import CONSUMED_SQL, daemon_env, reaches, scalar, wait_until
from newsflow.adapters import kafka
from newsflow.app.publish import publish
from newsflow.settings import Settings

TOTAL = 1500
INVALID_EVERY = 10
PARAGRAPH = (
    "Chinese President Xi Jinping met Russian President Vladimir Putin in Samarkand, where leaders of the "
    "Shanghai Cooperation Organization gathered for a summit watched closely in Washington and Brussels. "
)


def worker_process(settings: Settings, state_dir: Path) -> subprocess.Popen[bytes]:
    env = daemon_env(
        settings,
        state_dir,
        NEWSFLOW_BATCH_MAX_RECORDS="50",
        NEWSFLOW_LOG_LEVEL=os.environ.get("NF_TEST_WORKER_LOG", "warning"),
    )
    return subprocess.Popen([sys.executable, "-m", "newsflow", "run", "pipeline"], env=env)


async def test_sigkill_mid_batch_then_restart_accounts_for_every_message_once(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    feed = tmp_path / "feed.jsonl"
    with feed.open("w") as fh:
        for i in range(TOTAL):
            if i % INVALID_EVERY == 0:
                fh.write(f'{{"url": "https://broken.example/{i}", "text": \n')
            else:
                msg = {
                    "url": f"https://wire.example/{i}",
                    "source": f"outlet-{i % 7}",
                    "fetched_at": "2022-09-15T10:00:00+00:00",
                    "text": f"Headline {i}\n\n" + PARAGRAPH * 4 + f"Item {i}.",
                }
                fh.write(json.dumps(msg) + "\n")
    await kafka.ensure_topics(settings.kafka_bootstrap, [(settings.raw_topic, 4), (settings.dlq_topic, 1)])
    assert await publish(settings.kafka_bootstrap, settings.raw_topic, [feed], progress=False) == TOTAL

    first = worker_process(settings, tmp_path)
    try:
        await wait_until(
            lambda: reaches(pool, 200, CONSUMED_SQL, settings.consumer_group),
            timeout_s=90,
            interval_s=0.01,
            what="progress",
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    at_kill = await scalar(pool, CONSUMED_SQL, settings.consumer_group)
    assert at_kill < TOTAL, "the worker finished before it was killed; the test proves nothing"

    second = worker_process(settings, tmp_path)
    try:
        await wait_until(
            lambda: reaches(pool, TOTAL, CONSUMED_SQL, settings.consumer_group),
            timeout_s=120,
            what="all messages consumed",
        )
        await asyncio.sleep(1.0)  # anything applied twice would show up now
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)

    async with pool.acquire() as conn:
        received = await conn.fetchval("SELECT count(*) FROM newsflow.events WHERE type = 'ArticleReceived'")
        rejected = await conn.fetchval("SELECT count(*) FROM newsflow.events WHERE type = 'ArticleRejected'")
        distinct_sources = await conn.fetchval(
            "SELECT count(DISTINCT (metadata->'causation'->>'partition', metadata->'causation'->>'offset'))"
            " FROM newsflow.events WHERE type IN ('ArticleReceived', 'ArticleRejected')"
        )
    assert rejected == TOTAL // INVALID_EVERY
    assert received + rejected == TOTAL, f"received {received} + rejected {rejected} != published {TOTAL}"
    assert distinct_sources == TOTAL, "some Kafka record produced events twice"
