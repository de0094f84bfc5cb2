"""What each part of a running daemon is doing, kept in a file so ``newsflow status`` can tell.

The daemon's services change state as they wait out outages (``outages``) and
its child pipeline processes as they die and restart (``daemon``). Each daemon
process writes its own file, ``health.json`` (or ``health.child-N.json``), on
every change and on a heartbeat; ``status`` reads them even while PostgreSQL is
down, which is exactly when an operator asks. A file whose heartbeat stopped
belongs to a process that is gone.

The same snapshots answer the metrics endpoint's ``/readyz`` and ``/healthz``
(``endpoint``): the snapshot carries how long ago each loop of the process last
ticked, and which partitions its pipeline owns (``process_state``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from newsflow import process_state

log = structlog.get_logger(__name__)

HEARTBEAT_S = 2.0
STALE_AFTER_S = 15.0  # no heartbeat for this long: the process is gone
# A loop that has not ticked for this long is stuck. A pipeline step can wait on a record in its stages,
# which the stage runner bounds at 6 x 10 s of wall time plus 30 s of grace.
ALIVE_WITHIN_S = 120.0


RUNNING = "running"
WAITING = "waiting_for_database"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class ServiceHealth:
    state: str = "starting"
    since: str = field(default_factory=_now)
    outages: int = 0
    restarts: int = 0  # started again after an outage (a service that waits in place never is)
    last_error: str | None = None


@dataclass
class ChildHealth:
    pid: int | None = None
    running: bool = False
    restarts: int = 0
    last_exit: int | None = None
    since: str = field(default_factory=_now)


class Health:
    """This process's services and children; every change is written to ``path`` (None: kept in memory)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.pid = os.getpid()
        self.started_at = _now()
        self.services: dict[str, ServiceHealth] = {}
        self.children: dict[int, ChildHealth] = {}
        self.member_id: str | None = None  # this process's pipeline consumer in its group
        self._write_failed = False

    def service(self, name: str, state: str, error: BaseException | None = None, restarted: bool = False) -> None:
        current = self.services.setdefault(name, ServiceHealth())
        current.restarts += restarted
        if state == WAITING and current.state != WAITING:
            current.outages += 1
        if error is not None:
            current.last_error = type(error).__name__
        if state != current.state:
            current.state, current.since = state, _now()
        self.write()

    def member(self, member_id: str | None) -> None:
        """The group member id of this process's consumer: a successor removes it if this process dies."""
        if member_id != self.member_id:
            self.member_id = member_id
            self.write()

    def forget(self, name: str) -> None:
        self.services.pop(name, None)
        self.write()

    def child_started(self, slot: int, pid: int | None) -> None:
        child = self.children.setdefault(slot, ChildHealth())
        child.pid, child.running, child.since = pid, True, _now()
        self.write()

    def child_exited(self, slot: int, returncode: int | None) -> None:
        child = self.children.setdefault(slot, ChildHealth())
        child.running, child.last_exit, child.since = False, returncode, _now()
        child.restarts += 1
        self.write()

    def readiness(self) -> str:
        return readiness(self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "started_at": self.started_at,
            "heartbeat_at": time.time(),
            "member_id": self.member_id,
            "services": {name: asdict(s) for name, s in sorted(self.services.items())},
            "children": {str(slot): asdict(c) for slot, c in sorted(self.children.items())},
            "loops": process_state.loop_ages(),
            "partitions": process_state.partitions(),
        }

    def write(self) -> None:
        """Replace the file in one rename, so a reader never sees half of it; a failure is logged once."""
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.{self.pid}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.snapshot(), indent=2))
            tmp.replace(self.path)
        except OSError as exc:
            if not self._write_failed:
                log.warning("health.unwritable", path=str(self.path), error=str(exc))
            self._write_failed = True

    async def beat(self, stop: asyncio.Event) -> None:
        """Rewrite the file every ``HEARTBEAT_S`` until ``stop``; then mark every service stopped."""
        while not stop.is_set():
            self.write()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEARTBEAT_S)
        for name in self.services:
            self.service(name, "stopped")


def readiness(snapshot: dict[str, Any], now: float | None = None) -> str:
    """``ready``, ``degraded`` (waiting out an outage, or a child down), ``starting``, or ``stopped``/``gone``."""
    if (now or time.time()) - float(snapshot.get("heartbeat_at", 0)) > STALE_AFTER_S:
        return "gone"
    states = {s["state"] for s in snapshot["services"].values()}
    if not states or states == {"stopped"}:
        return "stopped" if states else "starting"
    if WAITING in states or any(not c["running"] for c in snapshot["children"].values()):
        return "degraded"
    return "ready" if states == {RUNNING} else "starting"


def read(path: Path) -> dict[str, Any] | None:
    """One process's last snapshot; None when the file is missing or half written."""
    try:
        snapshot: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return snapshot


def read_all(state_dir: Path) -> dict[str, dict[str, Any]]:
    """Every daemon process's last snapshot under ``state_dir``, by file name."""
    found = {}
    for path in sorted(state_dir.glob("health*.json")):
        snapshot = read(path)
        if snapshot is not None:
            found[path.name] = snapshot
    return found


def file_for(state_dir: Path, child_slot: int | None) -> Path:
    return state_dir / ("health.json" if child_slot is None else f"health.child-{child_slot}.json")


def summary(snapshots: dict[str, dict[str, Any]], broker_reachable: bool, database_reachable: bool) -> dict[str, Any]:
    """One readiness for the whole daemon (the worst of its processes and of what ``status`` could reach).

    A daemon is ready only once it has migrated (its ``startup`` is over) and, if it runs a
    pipeline, once its processes own partitions. ``checks`` says which condition holds.
    """
    processes = {name: {**snap, "readiness": readiness(snap)} for name, snap in snapshots.items()}
    running = [p for p in processes.values() if p["readiness"] not in ("gone", "stopped")]
    live = [p["readiness"] for p in running]
    pipelines = [p["partitions"] for p in running if p.get("partitions") is not None]
    checks = {
        "migrations_applied": bool(running) and not any("startup" in p["services"] for p in running),
        "postgres_reachable": database_reachable,
        "broker_reachable": broker_reachable,
        "partitions_assigned": any(pipelines) if pipelines else None,
    }
    if not live:
        overall = "not running"
    elif "degraded" in live or not (broker_reachable and database_reachable):
        overall = "degraded"
    elif "starting" in live or not checks["migrations_applied"] or checks["partitions_assigned"] is False:
        overall = "starting"
    else:
        overall = "ready"
    return {"readiness": overall, "checks": checks, "processes": processes}


def stuck_loops(snapshots: dict[str, dict[str, Any]], now: float | None = None) -> dict[str, list[str]]:
    """Per live process, the loops that have not ticked within ``ALIVE_WITHIN_S`` (empty: all alive).

    A loop's age is as of its process's heartbeat; the time since is added.
    """
    now = now or time.time()
    stuck = {}
    for name, snap in snapshots.items():
        if readiness(snap, now) in ("gone", "stopped"):
            continue
        since_beat = max(0.0, now - float(snap["heartbeat_at"]))
        late = [loop for loop, age in snap.get("loops", {}).items() if age + since_beat > ALIVE_WITHIN_S]
        if late:
            stuck[name] = late
    return stuck


READINESS_HELP = {
    "ready": "every service runs and PostgreSQL and the broker answer",
    "degraded": "running, but waiting out an outage or restarting a child process",
    "starting": "migrating, connecting, or waiting for partitions",
    "not running": "no daemon process has written its health file in the last 15 s",
}


CHECK_NAMES = {
    "migrations_applied": "migrations applied",
    "postgres_reachable": "PostgreSQL reachable",
    "broker_reachable": "broker reachable",
    "partitions_assigned": "partitions assigned",
}


def render(health: dict[str, Any]) -> list[str]:
    lines = [f"daemon: {health['readiness']} ({READINESS_HELP[health['readiness']]})"]
    failing = [CHECK_NAMES[name] for name, ok in health.get("checks", {}).items() if ok is False]
    if failing and health["readiness"] != "not running":
        lines.append(f"  not yet: {', '.join(failing)}")
    for name, p in health["processes"].items():
        lines.append(f"  {name} pid {p['pid']}: {p['readiness']}")
        for service, s in p["services"].items():
            extra = f", {s['outages']} outages (last {s['last_error']})" if s["outages"] else ""
            extra += f", {s['restarts']} restarts" if s.get("restarts") else ""
            lines.append(f"    {service}: {s['state']} since {s['since']}{extra}")
        for slot, c in p["children"].items():
            state = "running" if c["running"] else f"down (exit {c['last_exit']})"
            lines.append(f"    child {slot} pid {c['pid']}: {state}, {c['restarts']} restarts")
    return lines
