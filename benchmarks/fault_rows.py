"""The faults, each caused for real on a running daemon: what was done, when it began and when it ended.

A fault returns a :class:`Fault`. ``end`` is where recovery is measured from: the moment the server is
back (PostgreSQL rows), the moment of the kill for the process rows (the fault is instantaneous; bringing
the process back is the daemon's job, or its supervisor's), the restart for ``sigkill_daemon``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from benchmarks.fault_harness import (
    Daemon,
    brokers,
    child_pipelines,
    pg_ctl,
    pg_socket_dir,
    pg_start,
    stage_workers,
)

PG_STOP_S = 30.0
SUPERVISOR_DELAY_S = 1.0  # a restart policy's pause before starting the container again
POISON_KINDS = ("crc_mismatch", "unknown_codec", "corrupt_compressed")


@dataclass
class Fault:
    start: float  # wall time (time.time()): comparable with PostgreSQL's recorded_at
    end: float
    notes: dict[str, Any] = field(default_factory=dict)
    broker_emptied: bool = False  # what the broker held before ``start`` is gone with it
    ok: bool = True  # the fault could be caused, and what it needs from the daemon happened


@dataclass
class Context:
    daemon: Daemon
    bootstrap: str
    topic: str


FaultFn = Callable[[Context], Awaitable[Fault]]


async def pg_stop_30s(ctx: Context) -> Fault:
    pgdata = ctx.daemon.pgdata
    socket_dir = pg_socket_dir(pgdata)
    start = time.time()
    await asyncio.to_thread(pg_ctl, pgdata, "stop", "-m", "fast")
    await asyncio.sleep(PG_STOP_S)
    await asyncio.to_thread(pg_start, pgdata, socket_dir)
    return Fault(start, time.time(), {"stopped_s": PG_STOP_S})


async def pg_restart(ctx: Context) -> Fault:
    pgdata = ctx.daemon.pgdata
    start = time.time()
    await asyncio.to_thread(pg_ctl, pgdata, "-l", str(pgdata / "log"), "restart", "-m", "fast")
    return Fault(start, time.time())


def _listens(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


async def broker_kill_restart(ctx: Context, wait_s: float = 20.0) -> Fault:
    found = brokers(ctx.daemon.tree())
    if not found:
        return Fault(time.time(), time.time(), {"error": "no broker process under the daemon"}, ok=False)
    start = time.time()
    found[0].send_signal(signal.SIGKILL)
    with contextlib.suppress(psutil.Error):
        found[0].wait(5)
    deadline = time.monotonic() + wait_s
    back_after: float | None = None
    while time.monotonic() < deadline:
        if _listens(ctx.bootstrap):
            back_after = round(time.time() - start, 2)
            break
        await asyncio.sleep(0.2)
    notes = {"killed_pid": found[0].pid, "broker_back_on_same_port_after_s": back_after}
    return Fault(start, start, notes, broker_emptied=True, ok=back_after is not None)


async def sigkill_daemon(ctx: Context) -> Fault:
    before = ctx.daemon.endpoints() or {}
    start = time.time()
    ctx.daemon.kill()
    await asyncio.sleep(SUPERVISOR_DELAY_S)
    restarted = time.time()
    ctx.daemon.start()
    after = await ctx.daemon.wait_endpoints()
    notes = {
        "restarted_after_s": round(restarted - start, 2),
        "same_broker": after.get("kafka_bootstrap") == before.get("kafka_bootstrap"),
        "same_database": after.get("database_url") == before.get("database_url"),
    }
    return Fault(start, restarted, notes)


async def sigkill_child(ctx: Context, wait_s: float = 30.0) -> Fault:
    children = child_pipelines(ctx.daemon.tree())
    if not children:
        return Fault(time.time(), time.time(), {"error": "no child pipeline (run with --workers 2)"}, ok=False)
    victim = children[0]
    start = time.time()
    victim.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    replaced_after: float | None = None
    while time.monotonic() < deadline:
        if any(p.pid != victim.pid for p in child_pipelines(ctx.daemon.tree())):
            replaced_after = round(time.time() - start, 2)
            break
        await asyncio.sleep(0.2)
    notes = {"killed_pid": victim.pid, "child_replaced_after_s": replaced_after}
    return Fault(start, start, notes, ok=replaced_after is not None)


async def sigkill_stage_worker(ctx: Context) -> Fault:
    workers = stage_workers(ctx.daemon.tree())
    if not workers:
        return Fault(time.time(), time.time(), {"error": "no stage worker under the daemon"}, ok=False)
    start = time.time()
    workers[0].send_signal(signal.SIGKILL)
    return Fault(start, start, {"killed_pid": workers[0].pid, "stage_workers_before": len(workers)})


def poison_available() -> bool:
    try:
        importlib.import_module("benchmarks.poison_batches")
    except ModuleNotFoundError:
        return False
    return True


async def poison_batch(ctx: Context) -> Fault:
    """One poison batch of each kind on partition 0, between good records on every partition."""
    module = importlib.import_module("benchmarks.poison_batches")
    produced: dict[str, Any] = {}
    start = time.time()
    for kind in POISON_KINDS:
        try:
            produced[kind] = list(await module.produce_poison(ctx.bootstrap, ctx.topic, 0, kind))
        except Exception as exc:  # noqa: BLE001  (a kind the broker refuses is recorded, not fatal)
            produced[kind] = f"not produced: {type(exc).__name__}: {exc}"
    return Fault(start, time.time(), {"poison_offsets": produced})


FAULTS: dict[str, tuple[FaultFn, int]] = {  # name → (fault, --workers)
    "pg_stop_30s": (pg_stop_30s, 1),
    "pg_restart": (pg_restart, 1),
    "broker_kill_restart": (broker_kill_restart, 1),
    "sigkill_daemon": (sigkill_daemon, 1),
    "sigkill_child": (sigkill_child, 2),
    "sigkill_stage_worker": (sigkill_stage_worker, 1),
    "poison_batch": (poison_batch, 1),
}
