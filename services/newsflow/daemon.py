"""The newsflow daemon: pipeline workers and log readers in one asyncio process."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

import structlog

from newsflow import projections
from newsflow.adapters import postgres
from newsflow.log_reader import LogReader
from newsflow.pipeline import PipelineWorker
from newsflow.settings import Settings

log = structlog.get_logger(__name__)

SERVICES = ("pipeline", "projector")


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_services(settings: Settings, services: Sequence[str], stop: asyncio.Event) -> None:
    """Run the named services until ``stop`` is set; migrations are applied first."""
    conn = await postgres.connect(settings.database_url)
    try:
        await postgres.migrate(conn, settings.dashboard_password)
    finally:
        await conn.close()
    pool = await postgres.create_pool(settings.database_url, settings.db_pool_size)
    tasks: list[asyncio.Task[None]] = []
    try:
        if "pipeline" in services:
            tasks.append(asyncio.create_task(PipelineWorker(settings, pool).run(stop), name="pipeline"))
        if "projector" in services:
            reader = LogReader(
                projections.STORIES_READER, pool, projections.apply_events,
                page_size=settings.projection_batch, poll_interval_s=settings.poll_interval_s,
            )
            tasks.append(asyncio.create_task(reader.run(stop), name="projector"))
        log.info("daemon.running", services=list(services))
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                stop.set()
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.close()
