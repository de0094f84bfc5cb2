"""Runs CPU-bound stage code in worker processes, with a time and a memory bound per message.

Extraction cost is super-linear on some page shapes (a 1 MB page of many tiny
paragraphs takes trafilatura minutes), and a thread cannot be stopped. A
process can: pebble kills a worker whose task overruns its timeout and starts
a fresh one, so one pathological page costs at most ``timeout_s`` and becomes a
rejection instead of stalling its partition. Each worker also runs under an
address-space limit, so a page that would need gigabytes fails with
MemoryError in its own worker. The workers also take the CPU work off the
event loop's core, which keeps consumer heartbeats flowing.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import ParamSpec, TypeVar

import pebble

P = ParamSpec("P")
T = TypeVar("T")


class StageTimeout(Exception):
    pass


class StageCrashed(Exception):
    """The worker died (killed, out of memory) or raised MemoryError."""


def _warm_up() -> None:
    """Import the stage code, load the language and entity models and run the cheap stages once.

    A first message would otherwise pay for lazy loads (the language model
    alone is about half a second of CPU) out of its own budget.
    """
    from newsflow.domain import entities, stages
    from newsflow.domain.contract import RawArticleV1

    entities.warm_up()
    sample = {"url": "https://warm-up.invalid/", "source": "warm-up", "fetched_at": "2000-01-01T00:00:00+00:00"}
    stages.enrich(RawArticleV1.model_validate({**sample, "text": "The stage worker reads one article first."}))
    page = "<html><body><article><p>The stage worker reads one page first.</p></article></body></html>"
    stages.enrich(RawArticleV1.model_validate({**sample, "html": page}))


def _start_worker(memory_mb: int) -> None:
    """Every worker, the first ones and each that replaces a killed one, starts bounded and warm.

    pebble runs this before the worker takes a task, so a replacement's cold
    imports never count against the budget of the message it is given next.
    """
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _warm_up()


WARM_UP_TIMEOUT_S = 120.0  # loading spaCy takes seconds on a busy machine; a message's timeout may be shorter


class StageRunner:
    def __init__(self, workers: int, timeout_s: float, memory_mb: int) -> None:
        self.timeout_s = timeout_s
        self.workers = workers
        self._pool = pebble.ProcessPool(
            max_workers=workers,
            initializer=_start_worker,
            initargs=(memory_mb,),
            # spawn, not fork: the parent runs an event loop and client threads.
            context=multiprocessing.get_context("spawn"),
        )

    async def start(self) -> None:
        """Wait until every worker has started (and warmed up)."""
        await asyncio.gather(*(self._run(_warm_up, WARM_UP_TIMEOUT_S) for _ in range(self.workers)))

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(fn, self.timeout_s, *args, **kwargs)

    async def _run(self, fn: Callable[P, T], timeout_s: float, *args: P.args, **kwargs: P.kwargs) -> T:
        future = self._pool.submit(fn, timeout_s, *args, **kwargs)
        try:
            return await asyncio.wrap_future(future)
        except (FutureTimeout, TimeoutError) as exc:
            raise StageTimeout(f"stage exceeded {timeout_s:g} s") from exc
        except pebble.ProcessExpired as exc:
            raise StageCrashed(f"stage worker died: {exc}") from exc
        except MemoryError as exc:
            raise StageCrashed("stage ran out of its memory limit") from exc

    def close(self) -> None:
        self._pool.stop()  # type: ignore[no-untyped-call]  # pebble has no annotations
        self._pool.join(timeout=10)
