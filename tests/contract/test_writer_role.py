"""The services' role: appends and derived tables, never the schema, never a rewrite of the log."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from conftest import role_url, running_daemon, settings_for, wait_until
from newsflow.adapters.embedded import EmbeddedBroker
from newsflow.settings import WRITER_ROLE

REFUSED = {
    "update an event": "UPDATE newsflow.events SET type = type",
    "delete an event": "DELETE FROM newsflow.events",
    "truncate the log": "TRUNCATE newsflow.events",
    "table in the event schema": "CREATE TABLE newsflow.scratch (i int)",
    "table in the projection schema": "CREATE TABLE projection.scratch (i int)",
    "drop a projection": "DROP TABLE projection.articles",
    "change a view": "CREATE OR REPLACE VIEW dashboard.scratch AS SELECT 1",
    "alter a table": "ALTER TABLE newsflow.consumer_offsets ADD COLUMN scratch int",
    "change a role": "ALTER ROLE newsflow_dashboard PASSWORD 'x'",
    "rewrite migrations": "DELETE FROM public.newsflow_migrations",
    "change a fired alert": "UPDATE newsflow.story_alerts SET value = 0",
    "forget a fired alert": "DELETE FROM newsflow.story_alerts",
}


@pytest.mark.parametrize("what", sorted(REFUSED))
async def test_the_writer_cannot_change_the_schema_or_rewrite_the_log(database_url: str, what: str) -> None:
    conn = await asyncpg.connect(role_url(database_url, WRITER_ROLE))
    try:
        with pytest.raises(asyncpg.PostgresError) as refused:
            await conn.execute(REFUSED[what])
        assert isinstance(refused.value, asyncpg.InsufficientPrivilegeError | asyncpg.RaiseError), refused.value
    finally:
        await conn.close()


async def test_the_daemon_runs_as_the_writer(broker: EmbeddedBroker, database_url: str) -> None:
    """Every connection the running services hold belongs to newsflow_writer, none to the owner."""
    settings = settings_for(broker, database_url)
    conn = await asyncpg.connect(database_url)
    try:
        async with running_daemon(settings):

            async def users() -> set[str]:
                rows = await conn.fetch(
                    "SELECT DISTINCT usename FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
                return {r["usename"] for r in rows}

            await wait_until(lambda: _listening(conn), timeout_s=60, what="both readers listening")
            assert await users() == {WRITER_ROLE}
    finally:
        await conn.close()


async def _listening(conn: asyncpg.Connection) -> bool:
    """Both log readers hold their listening connection: the services are up."""
    await asyncio.sleep(0)
    n = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'"
    )
    return int(n) >= 2
