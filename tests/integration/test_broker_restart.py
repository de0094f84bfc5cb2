"""The embedded broker keeps its log in memory: after a restart it is empty while PostgreSQL keeps offsets.

New messages must not be skipped: the stored offsets are detected as belonging
to another log, logged, recorded as a ConsumerOffsetsReset event, and the
consumer starts from the new log's beginning.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from conftest import RECEIVED_SQL, reaches, scalar, wait_until
from newsflow.adapters import kafka
from newsflow.adapters.embedded import EmbeddedBroker
from newsflow.app.daemon import run_services
from newsflow.app.publish import publish
from newsflow.settings import Settings


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(log_path=tmp_path / "broker.log")
    b.start()
    yield b
    b.stop()


def feed(path: Path, prefix: str, n: int) -> Path:
    lines = [
        json.dumps(
            {
                "url": f"https://wire.example/{prefix}/{i}",
                "source": "Wire",
                "fetched_at": "2022-09-15T10:00:00+00:00",
                "text": f"{prefix} story {i}\n\nBody of {prefix} story number {i}.",
            }
        )
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def publish_and_process(settings: Settings, pool: asyncpg.Pool, path: Path, expect_total: int) -> None:
    await kafka.ensure_topics(settings.kafka_bootstrap, [(settings.raw_topic, 1)])
    await publish(settings.kafka_bootstrap, settings.raw_topic, [path], progress=False)
    stop = asyncio.Event()
    task = asyncio.create_task(run_services(settings, ("pipeline",), stop))
    try:

        async def done() -> bool:
            assert not task.done(), task
            return await reaches(pool, expect_total, RECEIVED_SQL)

        await wait_until(done, what=f"{expect_total} received articles")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.mark.parametrize("same_cluster_id", [False, True], ids=["new-cluster-id", "same-cluster-id"])
async def test_restarted_empty_broker_does_not_make_the_pipeline_skip_new_messages(
    settings: Settings, pool: asyncpg.Pool, own_broker: EmbeddedBroker, tmp_path: Path, same_cluster_id: bool
) -> None:
    settings = settings.model_copy(update={"kafka_bootstrap": own_broker.bootstrap, "raw_partitions": 1})
    await publish_and_process(settings, pool, feed(tmp_path / "before.jsonl", "before", 6), 6)

    own_broker.restart(cluster_id=own_broker.cluster_id if same_cluster_id else None)
    await publish_and_process(settings, pool, feed(tmp_path / "after.jsonl", "after", 3), 9)

    async with pool.acquire() as conn:
        resets = await conn.fetch("SELECT payload FROM newsflow.events WHERE type = 'ConsumerOffsetsReset'")
        offsets = await conn.fetchrow("SELECT next_offset, cluster_id FROM newsflow.consumer_offsets")
    assert len(resets) == 1
    reset = resets[0]["payload"]
    assert reset["reason"] == ("beyond_log_end" if same_cluster_id else "broker_changed")
    assert reset["stored_offset"] == 6 and reset["new_offset"] == 0 and reset["log_end"] == 3
    assert offsets["next_offset"] == 3 and offsets["cluster_id"] == own_broker.cluster_id
    assert await scalar(pool, RECEIVED_SQL) == 9
