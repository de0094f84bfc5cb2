"""The newsflow daemon: pipeline workers and log readers in one asyncio process."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import structlog

from newsflow.adapters import postgres
from newsflow.app import outages
from newsflow.ingest.worker import PipelineWorker
from newsflow.readside import projections, story_clusterer
from newsflow.readside.log_reader import LogReader
from newsflow.settings import Settings

log = structlog.get_logger(__name__)

SERVICES = ("pipeline", "clusterer", "projector")


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


PARENT_ENV = "NEWSFLOW_INTERNAL_PARENT_PID"


async def stop_when_orphaned(stop: asyncio.Event, interval_s: float = 1.0) -> None:
    """In a child pipeline process: stop when the process that started it is gone (even SIGKILLed)."""
    parent = int(os.environ.get(PARENT_ENV, "0"))
    if not parent:
        return
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("daemon.parent_gone", parent=parent)
            stop.set()
            return
        await asyncio.sleep(interval_s)


def _settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process these exact settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump(mode="json").items():
        env[f"NEWSFLOW_{name.upper()}"] = str(value)
    return env


async def _extra_pipeline_processes(settings: Settings, count: int, stop: asyncio.Event) -> None:
    """``count`` more pipeline processes in the same consumer group, restarted when one dies, stopped with this one.

    The Kafka way to use more cores: each process owns some partitions (and its own
    stage workers); PostgreSQL serializes their appends.
    """
    env = {**_settings_env(settings), PARENT_ENV: str(os.getpid())}
    await asyncio.gather(*(_keep_child(env, slot, stop) for slot in range(1, count + 1)))


CHILD_HEALTHY_S = 60.0  # a child that ran this long before it died restarts without waiting


async def _keep_child(env: dict[str, str], slot: int, stop: asyncio.Event) -> None:
    """One child pipeline process, started again (with backoff) whenever it exits before ``stop``.

    A restarted child joins the group and resumes from the offsets stored in
    PostgreSQL, like any new consumer: what the dead one had not committed is
    applied once, by whoever gets the partition.
    """
    restarts = 0
    while not stop.is_set():
        started = time.monotonic()
        child = await asyncio.create_subprocess_exec(sys.executable, "-m", "newsflow", "run", "pipeline", env=env)
        log.info("daemon.pipeline_process_started", slot=slot, pid=child.pid, restarts=restarts)
        try:
            stopped = asyncio.ensure_future(stop.wait())
            exited = asyncio.ensure_future(child.wait())
            await asyncio.wait({stopped, exited}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
        finally:
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)
                await child.wait()
        if stop.is_set():
            return
        restarts += 1
        ran_s = time.monotonic() - started
        log.warning(
            "daemon.pipeline_process_exited", slot=slot, pid=child.pid, returncode=child.returncode, restarts=restarts
        )
        if ran_s < CHILD_HEALTHY_S:
            await outages.sleep_unless_stopped(stop, outages.backoff_s(restarts - 1))


async def run_services(
    settings: Settings, services: Sequence[str], stop: asyncio.Event, pipeline_processes: int = 1
) -> None:
    """Run the named services until ``stop`` is set; migrations are applied first.

    Each service waits out database outages (``outages``): it stops and starts again once
    PostgreSQL answers, from the offsets and checkpoints stored there.

    ``pipeline_processes`` > 1 starts that many pipeline processes in all: this one and child processes.
    """
    url = settings.database_url

    async def start() -> asyncpg.Pool:
        await postgres.migrate_url(url, settings.dashboard_password)
        return await postgres.create_pool(url, settings.db_pool_size)

    pool = await outages.until_stopped("daemon", start, url, stop)
    if pool is None:
        return  # stopped while waiting for the database
    tasks: list[asyncio.Task[None]] = []

    def supervise(service: str, run: Callable[[], Awaitable[None]]) -> None:
        tasks.append(asyncio.create_task(outages.until_stopped(service, run, url, stop), name=service))

    try:
        if "pipeline" in services:
            supervise("pipeline", lambda: PipelineWorker(settings, pool).run(stop))
            if pipeline_processes > 1:
                tasks.append(
                    asyncio.create_task(
                        _extra_pipeline_processes(settings, pipeline_processes - 1, stop), name="pipelines"
                    )
                )
        clusterer = story_clusterer.StoryClusterer(settings.cluster_snapshot_every)
        readers = {
            "clusterer": (story_clusterer.READER, clusterer.handle),
            "projector": (projections.STORIES_READER, projections.apply_events),
        }
        for service, (name, handle) in readers.items():
            if service in services:
                reader = LogReader(
                    name, pool, handle, page_size=settings.projection_batch, poll_interval_s=settings.poll_interval_s
                )
                supervise(service, functools.partial(reader.run, stop))
        if os.environ.get(PARENT_ENV):
            tasks.append(asyncio.create_task(stop_when_orphaned(stop), name="orphan-watch"))
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
