"""The newsflow daemon: pipeline workers and log readers in one asyncio process."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import structlog

from newsflow.adapters import metrics, postgres
from newsflow.app import dead_members, endpoint, outages
from newsflow.app.health import Health, file_for
from newsflow.ingest.stage_runner import StageRunner
from newsflow.ingest.worker import PipelineWorker
from newsflow.readside import projections, story_clusterer, story_feed
from newsflow.readside.log_reader import LogReader
from newsflow.settings import Settings

log = structlog.get_logger(__name__)

SERVICES = ("pipeline", "clusterer", "projector", "feed")


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


PARENT_ENV = "NEWSFLOW_INTERNAL_PARENT_PID"
SLOT_ENV = "NEWSFLOW_INTERNAL_CHILD_SLOT"


def child_slot() -> int | None:
    """This process's slot among the parent's child pipeline processes; None in the parent."""
    slot = os.environ.get(SLOT_ENV)
    return int(slot) if slot else None


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


async def _extra_pipeline_processes(settings: Settings, count: int, stop: asyncio.Event, health: Health) -> None:
    """``count`` more pipeline processes in the same consumer group, restarted when one dies, stopped with this one.

    The Kafka way to use more cores: each process owns some partitions (and its own
    stage workers); PostgreSQL serializes their appends.
    """
    env = {**_settings_env(settings), PARENT_ENV: str(os.getpid())}
    await asyncio.gather(
        *(_keep_child(settings, {**env, SLOT_ENV: str(slot)}, slot, stop, health) for slot in range(1, count + 1))
    )


CHILD_HEALTHY_S = 60.0  # a child that ran this long before it died restarts without waiting


async def _keep_child(settings: Settings, env: dict[str, str], slot: int, stop: asyncio.Event, health: Health) -> None:
    """One child pipeline process, started again (with backoff) whenever it exits before ``stop``.

    A restarted child joins the group and resumes from the offsets stored in
    PostgreSQL, like any new consumer: what the dead one had not committed is
    applied once, by whoever gets the partition. The dead one's group member is
    removed first, so its partitions move without waiting for the session timeout.
    """
    restarts = 0
    while not stop.is_set():
        started = time.monotonic()
        child = await asyncio.create_subprocess_exec(sys.executable, "-m", "newsflow", "run", "pipeline", env=env)
        log.info("daemon.pipeline_process_started", slot=slot, pid=child.pid, restarts=restarts)
        health.child_started(slot, child.pid)
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
        health.child_exited(slot, child.returncode)
        metrics.child_restarted(child.pid)
        ran_s = time.monotonic() - started
        log.warning(
            "daemon.pipeline_process_exited", slot=slot, pid=child.pid, returncode=child.returncode, restarts=restarts
        )
        member = dead_members.member_in(file_for(settings.state_dir, slot))
        if member:
            await dead_members.remove(settings, [member], f"child {slot} exited")
        if ran_s < CHILD_HEALTHY_S:
            await outages.sleep_unless_stopped(stop, outages.backoff_s(restarts - 1))


async def run_services(
    settings: Settings,
    services: Sequence[str],
    stop: asyncio.Event,
    pipeline_processes: int = 1,
    health: Health | None = None,
) -> None:
    """Run the named services until ``stop`` is set; migrations are applied first.

    Migrations run as the owner (``database_url``); the services connect as ``newsflow_writer``.
    Each service waits out database outages (``outages``) and resumes from the offsets and
    checkpoints stored in PostgreSQL: the pipeline in place, the log readers by starting again.

    ``pipeline_processes`` > 1 starts that many pipeline processes in all: this one and child processes.
    ``health`` hears every service's and child's state (``newsflow status`` shows it).
    """
    health = health or Health(None)
    removing = None
    if health.path is not None and "pipeline" in services and child_slot() is None:
        # Read before this process's health file replaces its predecessor's.
        dead = dead_members.left_by_the_dead(health.path.parent, health.started_at)
        removing = asyncio.create_task(dead_members.remove(settings, dead, "found at start"), name="dead-members")
    beat = asyncio.create_task(health.beat(stop), name="health")
    try:
        # The parent serves metrics and health for every process of the daemon (``endpoint``).
        serving = endpoint.serving(settings, health, stop) if child_slot() is None else contextlib.nullcontext()
        async with serving:
            await _run_services(settings, services, stop, pipeline_processes, health)
    finally:
        stop.set()
        await beat
        if removing is not None:
            await removing


async def _run_services(
    settings: Settings, services: Sequence[str], stop: asyncio.Event, pipeline_processes: int, health: Health
) -> None:
    url = settings.writer_url()

    async def start() -> asyncpg.Pool:
        await postgres.migrate_url(settings.database_url, settings.dashboard_password, settings.writer_password)
        return await postgres.create_pool(url, settings.db_pool_size)

    pool = await outages.until_stopped("startup", start, url, stop, health)
    health.forget("startup")
    if pool is None:
        return  # stopped while waiting for the database
    tasks: list[asyncio.Task[None]] = []
    cleanup: list[Callable[[], None]] = []

    def supervise(service: str, run: Callable[[], Awaitable[None]]) -> None:
        tasks.append(asyncio.create_task(outages.until_stopped(service, run, url, stop, health), name=service))

    try:
        if "pipeline" in services:
            # One set of stage workers for every restart of the pipeline after an outage: they stay warm.
            runner = StageRunner.for_settings(settings)
            cleanup.append(runner.close)
            wait_out = outages.waiter("pipeline", url, stop, health)
            supervise(
                "pipeline",
                lambda: PipelineWorker(settings, pool, runner=runner, wait_out=wait_out, on_member=health.member).run(
                    stop
                ),
            )
            if pipeline_processes > 1:
                children = _extra_pipeline_processes(settings, pipeline_processes - 1, stop, health)
                tasks.append(asyncio.create_task(children, name="pipelines"))
        clusterer = story_clusterer.StoryClusterer(settings.cluster_snapshot_every)
        readers = {
            "clusterer": (story_clusterer.READER, clusterer.handle, clusterer.committed),
            "projector": (projections.STORIES_READER, projections.apply_events, None),
        }
        for service, (name, handle, committed) in readers.items():
            if service in services:
                reader = LogReader(
                    name,
                    pool,
                    handle,
                    page_size=settings.projection_batch,
                    poll_interval_s=settings.poll_interval_s,
                    committed=committed,
                )
                supervise(service, functools.partial(reader.run, stop))
        if "feed" in services:  # a log reader too, which owns a Kafka producer around its LogReader
            supervise("feed", functools.partial(story_feed.StoryFeed(settings, pool).run, stop))
        if os.environ.get(PARENT_ENV):
            tasks.append(asyncio.create_task(stop_when_orphaned(stop), name="orphan-watch"))
        log.info("daemon.running", services=list(services))
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for close in cleanup:
            close()
        await pool.close()
