"""Waiting out a PostgreSQL outage: a service that loses the database stops, waits, and starts again.

The pipeline waits in place (``waiter``): its consumer stays in the group. Any
other service that hits an outage stops as it would on shutdown (nothing half
applied survives it: appends, offsets and checkpoints commit together) and is
started again once a new connection answers, so it resumes from the offsets and
checkpoints PostgreSQL holds. The wait backs off exponentially up to a cap.
One ``db.unavailable`` is logged per outage and service, one ``db.recovered``
when it ends. Any other error still stops the daemon: a bug must be seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from newsflow import process_state
from newsflow.adapters import metrics, postgres
from newsflow.app.health import RUNNING, WAITING, Health

log = structlog.get_logger(__name__)

T = TypeVar("T")

FIRST_WAIT_S = 0.5
MAX_WAIT_S = 2.0  # the end of an outage is noticed at most this long after; a probe is one connection


def backoff_s(attempt: int, first_s: float = FIRST_WAIT_S, cap_s: float = MAX_WAIT_S) -> float:
    """The wait before retry number ``attempt`` (0-based): doubling from ``first_s``, at most ``cap_s``."""
    return float(min(cap_s, first_s * 2 ** min(attempt, 30)))


async def sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def wait_for_database(url: str, stop: asyncio.Event, service: str, error: BaseException | None = None) -> None:
    """Return once PostgreSQL answers at ``url`` (or ``stop`` is set), logging the outage once."""
    started = time.monotonic()
    log.warning("db.unavailable", service=service, error=type(error).__name__ if error else None)
    metrics.outage(service)
    attempt = 0
    try:
        while not stop.is_set():
            process_state.tick(f"{service}.waiting_for_database")
            await sleep_unless_stopped(stop, backoff_s(attempt))
            attempt += 1
            if not stop.is_set() and await postgres.reachable(url):
                log.info("db.recovered", service=service, down_s=round(time.monotonic() - started, 1), attempts=attempt)
                return
    finally:
        process_state.loop_ended(f"{service}.waiting_for_database")


def waiter(
    service: str, url: str, stop: asyncio.Event, health: Health | None = None
) -> Callable[[BaseException], Awaitable[None]]:
    """A wait for a service that rides out an outage in place: ``health`` hears it wait and run again."""
    heard = health or Health(None)

    async def wait_out(error: BaseException) -> None:
        heard.service(service, WAITING, error)
        await wait_for_database(url, stop, service, error)
        heard.service(service, RUNNING)

    return wait_out


async def until_stopped(
    service: str, run: Callable[[], Awaitable[T]], url: str, stop: asyncio.Event, health: Health | None = None
) -> T | None:
    """``run()``'s result, starting it again after every database outage it meets; None if ``stop`` came first.

    ``health`` hears each state: running, waiting for the database, running again.
    """
    health = health or Health(None)
    metrics.service_seen(service)
    starts = 0
    while not stop.is_set():
        health.service(service, RUNNING, restarted=starts > 0)
        starts += 1
        try:
            return await run()
        except Exception as exc:
            if not postgres.is_unavailable(exc) or stop.is_set():
                raise
            health.service(service, WAITING, exc)
            await wait_for_database(url, stop, service, exc)
    return None
