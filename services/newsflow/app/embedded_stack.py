"""`newsflow run --embedded`: the private PostgreSQL and broker a daemon runs on, kept across crashes.

``NEWSFLOW_STATE_DIR/endpoints.json`` says where they are (``kafka_bootstrap`` and
``database_url``, which every other CLI command reads) and who runs them: the
daemon's pid, the broker's port, cluster id and pid, PostgreSQL's data directory
and postmaster pid. It is written when the stack is up and whenever the broker is
replaced, and removed on a clean stop, which stops both servers.

A daemon killed with SIGKILL leaves both servers running, on purpose: the next
start finds them and uses them again. The broker's log is in memory, so reusing
it is the only way its records that were not applied yet get read; it keeps its
cluster id, so the stored offsets still match it. A broker that is gone is
replaced by a new, empty one (the pipeline then records ``ConsumerOffsetsReset``),
on the same port when that is free. There is never a second broker: every other
tansu process writing to this state directory's log is stopped.

While the daemon runs, a broker that dies is started again on the same port
(empty: memory storage), with the topics the pipeline subscribes to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from newsflow.adapters import kafka
from newsflow.adapters.embedded import (
    BrokerProcess,
    EmbeddedBroker,
    EmbeddedPostgres,
    pid_alive,
    port_is_free,
    running_brokers,
    stop_broker_process,
    wait_for_port,
)
from newsflow.app import outages
from newsflow.settings import Settings

log = structlog.get_logger(__name__)

WATCH_INTERVAL_S = 0.5


class StateDirInUse(RuntimeError):
    """Another live daemon runs the embedded stack of this state directory."""


def read_endpoints(path: Path) -> dict[str, Any]:
    """The endpoints file's content; an absent or unreadable file is an empty record."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _owner_alive(path: Path, endpoints: dict[str, Any]) -> int | None:
    """The pid of the daemon that wrote ``endpoints``, if it still runs (a reused pid does not count)."""
    pid = endpoints.get("daemon_pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return None
    try:
        written = path.stat().st_mtime
    except OSError:  # removed meanwhile: its daemon stopped cleanly
        return None
    return pid if pid_alive(pid, started_by=written) else None


@dataclass
class EmbeddedStack:
    settings: Settings
    pg: EmbeddedPostgres
    broker: EmbeddedBroker

    @property
    def endpoints_file(self) -> Path:
        return self.settings.endpoints_file()

    def write_endpoints(self) -> None:
        data = {
            "kafka_bootstrap": self.broker.bootstrap,
            "database_url": self.settings.database_url,
            "daemon_pid": os.getpid(),
            "broker": {"port": self.broker.port, "cluster_id": self.broker.cluster_id, "pid": self.broker.pid},
            "postgres": {"data_dir": str(self.pg.data_dir), "pid": self.pg.postmaster_pid()},
        }
        tmp = self.endpoints_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.endpoints_file)

    def banner(self) -> str:
        return (
            f"newsflow (embedded): broker {self.broker.bootstrap}, PostgreSQL data in {self.pg.data_dir}\n"
            f"  query the stories:  {self.pg.psql_path()} '{self.settings.database_url}'"
            " -c 'SELECT * FROM dashboard.stories'\n"
            f"  or:                 newsflow stories   |   newsflow status\n"
            f"  stop with Ctrl-C"
        )

    def stop(self) -> None:
        self.broker.stop()
        self.pg.stop()
        self.endpoints_file.unlink(missing_ok=True)


def _answers(broker: BrokerProcess) -> bool:
    try:
        wait_for_port("127.0.0.1", broker.port, timeout_s=5.0)
    except TimeoutError:
        return False
    return True


def choose_broker(log_path: Path, recorded: dict[str, Any]) -> EmbeddedBroker:
    """The broker of the last run if it still answers, else a new one; any other broker of ours is stopped."""
    running = running_brokers(log_path)
    # The recorded one first; then the others, newest pid last (most likely the latest started).
    running.sort(key=lambda b: (b.pid == recorded.get("pid") and b.port == recorded.get("port"), b.pid))
    broker = EmbeddedBroker(log_path=log_path)
    while running:
        candidate = running.pop()
        if _answers(candidate):
            broker.adopt(candidate)
            break
        log.warning("embedded.broker_unresponsive_stopped", pid=candidate.pid, port=candidate.port)
        stop_broker_process(candidate)
    for orphan in running:
        log.warning("embedded.broker_orphan_stopped", pid=orphan.pid, port=orphan.port, cluster_id=orphan.cluster_id)
        stop_broker_process(orphan)
    if broker.pid is not None:
        return broker
    port = recorded.get("port")
    if isinstance(port, int) and port_is_free(port):
        broker.port = port
    if recorded:
        log.warning(
            "embedded.broker_lost",
            previous_pid=recorded.get("pid"),
            previous_cluster_id=recorded.get("cluster_id"),
            detail="the broker of the last run is gone; a new, empty one starts, and what the old one held "
            "beyond the stored offsets is lost (see ConsumerOffsetsReset in `newsflow status`)",
        )
    broker.start()
    return broker


async def start_stack(settings: Settings) -> EmbeddedStack:
    """PostgreSQL and the broker for ``settings.state_dir``: those of the last run while they live, else new ones."""
    state = settings.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    path = settings.endpoints_file()
    previous = read_endpoints(path)
    owner = _owner_alive(path, previous)
    if owner is not None:
        raise StateDirInUse(f"newsflow run --embedded (pid {owner}) already runs on {state}; stop it first")
    pg = EmbeddedPostgres(state / "pgdata")
    await asyncio.to_thread(pg.start)
    try:
        broker = await asyncio.to_thread(choose_broker, state / "broker.log", previous.get("broker") or {})
        try:
            db_url = await pg.ensure_database("newsflow")
            stack = EmbeddedStack(
                settings.model_copy(update={"kafka_bootstrap": broker.bootstrap, "database_url": db_url}), pg, broker
            )
            stack.write_endpoints()
        except BaseException:
            broker.stop()
            raise
    except BaseException:
        await asyncio.to_thread(pg.stop)
        raise
    return stack


async def _replace_broker(stack: EmbeddedStack, stop: asyncio.Event) -> None:
    """Start a broker again on the dead one's port, until one runs (or ``stop``), and give it the topics."""
    broker, s = stack.broker, stack.settings
    log.warning(
        "embedded.broker_died",
        pid=broker.pid,
        returncode=broker.returncode(),
        cluster_id=broker.cluster_id,
        bootstrap=broker.bootstrap,
    )
    previous_cluster_id = broker.cluster_id
    attempt = 0
    while not stop.is_set():
        try:
            await asyncio.to_thread(broker.start)
            await kafka.ensure_topics(broker.bootstrap, [(s.raw_topic, s.raw_partitions), (s.dlq_topic, 1)])
        except Exception as exc:  # noqa: BLE001  (port taken, broker died again: try again)
            log.error("embedded.broker_restart_failed", bootstrap=broker.bootstrap, error=repr(exc), attempt=attempt)
            await asyncio.to_thread(broker.stop)
            await outages.sleep_unless_stopped(stop, outages.backoff_s(attempt))
            attempt += 1
            continue
        stack.write_endpoints()
        log.warning(
            "embedded.broker_restarted",
            bootstrap=broker.bootstrap,
            pid=broker.pid,
            cluster_id=broker.cluster_id,
            previous_cluster_id=previous_cluster_id,
            detail="memory storage: the new broker is empty; what the old one held beyond the stored offsets is "
            "lost (the pipeline records ConsumerOffsetsReset)",
        )
        return


async def keep_broker(stack: EmbeddedStack, stop: asyncio.Event) -> None:
    """Until ``stop``: whenever the broker process is gone, start another on the same port."""
    while not stop.is_set():
        await outages.sleep_unless_stopped(stop, WATCH_INTERVAL_S)
        if not stop.is_set() and not stack.broker.alive():
            await _replace_broker(stack, stop)


@contextlib.asynccontextmanager
async def running(settings: Settings, stop: asyncio.Event) -> AsyncIterator[Settings]:
    """The embedded stack, watched, for the duration of the block; yields the settings that point at it.

    Leaving the block stops both servers and removes the endpoints file; a process
    killed inside it leaves them for the next start.
    """
    stack = await start_stack(settings)
    print(stack.banner(), file=sys.stderr)
    watch = asyncio.create_task(keep_broker(stack, stop), name="embedded-broker-watch")
    try:
        yield stack.settings
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        await asyncio.to_thread(stack.stop)
        print("newsflow: stopped broker and PostgreSQL", file=sys.stderr)
