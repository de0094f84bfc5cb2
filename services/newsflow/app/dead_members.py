"""Removing the consumer-group member of a pipeline process that died, so its partitions move at once.

A SIGKILLed process never leaves its group: the broker keeps its partitions
until the session timeout (6 s) expires, and only then rebalances. Every
pipeline process writes its member id to its health file; whoever sees the
process dead (the parent that waited on a child, or a daemon starting where a
killed one ran) sends LeaveGroup on its behalf. It is best effort: when the
broker cannot be reached the session timeout still does the job.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import structlog

from newsflow.adapters import kafka
from newsflow.app.health import read, read_all
from newsflow.settings import Settings

log = structlog.get_logger(__name__)

REMOVE_TIMEOUT_S = 10.0


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def left_by_the_dead(state_dir: Path, own_started_at: str) -> list[str]:
    """Member ids in the health files of processes no longer running (read before this process writes its own)."""
    members = []
    for snapshot in read_all(state_dir).values():
        member, pid = snapshot.get("member_id"), int(snapshot.get("pid", 0))
        earlier_self = pid == os.getpid() and snapshot.get("started_at") != own_started_at  # a container's pid 1
        if member and pid and (earlier_self or (pid != os.getpid() and not is_alive(pid))):
            members.append(str(member))
    return members


def member_in(snapshot_path: Path) -> str | None:
    member = (read(snapshot_path) or {}).get("member_id")
    return str(member) if member else None


async def remove(settings: Settings, members: list[str], why: str) -> None:
    """LeaveGroup for each of ``members``; a failure is logged, never raised."""
    for member in members:
        try:
            await asyncio.wait_for(
                kafka.remove_member(settings.kafka_bootstrap, settings.consumer_group, member), REMOVE_TIMEOUT_S
            )
        except Exception as exc:  # noqa: BLE001  (best effort: the session timeout removes it anyway)
            log.info("group.dead_member_not_removed", member=member, why=why, error=type(exc).__name__)
        else:
            log.info("group.dead_member_removed", member=member, why=why)
