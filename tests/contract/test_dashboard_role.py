"""The dashboard role can read the dashboard views and cannot write anywhere, even with read-only off."""

from __future__ import annotations

import asyncpg
import pytest

from conftest import role_url

ATTEMPTS = {
    "temporary table": "CREATE TEMP TABLE scratch (i int)",
    "schema": "CREATE SCHEMA scratch",
    "table in public": "CREATE TABLE public.scratch (i int)",
    "projection row": "DELETE FROM projection.articles",
    "event": "INSERT INTO newsflow.events (stream_id) VALUES ('x')",
    "fired alert": "DELETE FROM newsflow.story_alerts",
    "large object": "SELECT lo_create(0)",
    "advisory lock": "SELECT pg_advisory_lock(1)",
}


@pytest.mark.parametrize("read_only", ["on", "off"])
@pytest.mark.parametrize("what", sorted(ATTEMPTS))
async def test_the_dashboard_role_cannot_write(database_url: str, what: str, read_only: str) -> None:
    conn = await asyncpg.connect(role_url(database_url, "newsflow_dashboard"))
    try:
        await conn.execute(f"SET default_transaction_read_only = {read_only}")
        with pytest.raises(asyncpg.PostgresError) as refused:
            await conn.execute(ATTEMPTS[what])
        if read_only == "off":
            assert isinstance(refused.value, asyncpg.InsufficientPrivilegeError), refused.value
        assert await conn.fetchval("SELECT count(*) FROM dashboard.stories") == 0, "reading still works"
    finally:
        await conn.close()


async def test_the_migrating_owner_keeps_temporary_tables_and_advisory_locks(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TEMP TABLE scratch (i int)")
        assert await conn.fetchval("SELECT pg_try_advisory_lock(1)") is True
    finally:
        await conn.close()
