"""Runs CPU-bound stage code in worker processes, with a time and a memory bound per message.

Extraction cost is super-linear on some page shapes (a 1 MB page of many tiny
paragraphs takes trafilatura minutes), and a thread cannot be stopped. A
process can, so one pathological page becomes a rejection instead of stalling
its partition. The workers also take the CPU work off the event loop's core,
which keeps consumer heartbeats flowing.

The time bound is a budget of the message's own work, so that a busy machine
never turns good input into a timeout:

- **CPU time.** Inside the worker an ``ITIMER_PROF`` timer counts only the
  CPU time of that process; when the budget is spent its signal handler raises
  in the stage code and the worker, still warm, takes the next message. Other
  processes competing for the cores do not count.
- **Wall-clock backstop.** C code that never returns to the interpreter (a
  signal handler runs only between bytecodes) is cut by pebble, which kills the
  worker after ``BACKSTOP_FACTOR`` times the budget in wall time and starts a
  fresh, warm one.
- **Retried alone.** A message that overruns either bound, or whose worker
  dies under it (killed from outside, or by the message), is tried once more
  with no other task of this runner in flight (new submissions wait, running
  ones finish first). Only a second overrun is a ``StageTimeout``, a second
  death a ``StageCrashed``: by then what was measured was the message's own.
- **A broken pool is replaced.** pebble abandons its whole pool when a worker
  dies while no task runs; the runner then starts a new one and submits again.

Each worker also runs under an address-space limit, so a page that would need
gigabytes fails with MemoryError in its own worker.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from types import FrameType
from typing import Any, ParamSpec, TypeVar

import pebble
import structlog

from newsflow.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")

log = structlog.get_logger(__name__)

BACKSTOP_FACTOR = 6.0  # wall time over the CPU budget before the worker is killed: 1/6 of a core still finishes
WARM_UP_TIMEOUT_S = 120.0  # loading spaCy takes seconds on a busy machine; a message's timeout may be shorter
# A task with no result this long after its wall-clock bound is in a wedged pool (a worker killed while
# holding the channel lock leaves the others unable to take tasks): the pool is replaced.
STUCK_GRACE_S = 30.0
REPLACE_WAIT_CAP_S = 5.0
WEDGED_AFTER_S = 5.0
_RAISE_AGAIN_S = 0.05  # CPU seconds between raises once over budget, in case stage code swallowed one


class StageTimeout(Exception):
    pass


class StageCrashed(Exception):
    """The worker died (killed, out of memory) or raised MemoryError."""


class OverBudget(Exception):
    """Raised in the worker: the stage used up its CPU budget (seconds of CPU time in ``args[0]``)."""


class _Overrun(Exception):
    """One attempt overran the CPU budget or the wall-clock backstop, or its worker died; the text says which."""

    def __init__(self, text: str, *, died: bool = False) -> None:
        super().__init__(text)
        self.died = died


class _BudgetSpent(BaseException):
    """Raised into the stage code by the timer; not an Exception, so stage code's ``except Exception`` lets it by."""


_armed = False


def _on_budget_spent(signum: int, frame: FrameType | None) -> None:
    if _armed:
        raise _BudgetSpent


def _disarm() -> None:
    global _armed
    _armed = False
    signal.setitimer(signal.ITIMER_PROF, 0)


def _within_budget(budget_s: float, fn: Callable[..., T], args: Sequence[Any], kwargs: Mapping[str, Any]) -> T:
    """In the worker: ``fn(*args, **kwargs)``, stopped with OverBudget once it used ``budget_s`` of CPU time.

    The nested ``finally`` makes a timer signal that lands while disarming end
    as OverBudget too, and never leaves the timer armed for pebble's own code.
    """
    global _armed
    signal.signal(signal.SIGPROF, _on_budget_spent)
    started = time.process_time()
    _armed = True
    signal.setitimer(signal.ITIMER_PROF, budget_s, _RAISE_AGAIN_S)
    try:
        try:
            return fn(*args, **kwargs)
        finally:
            _disarm()
    except _BudgetSpent:
        raise OverBudget(time.process_time() - started) from None
    finally:
        _disarm()


def _warm_up() -> None:
    """Import the stage code, load the language, entity and vector models and run the cheap stages once.

    A first message would otherwise pay for lazy loads (the language model
    alone is about half a second of CPU) out of its own budget.
    """
    from newsflow.domain import article_vectors, entities, stages
    from newsflow.domain.contract import RawArticleV1

    entities.warm_up()
    article_vectors.warm_up()
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


class StageRunner:
    """A pool of stage workers; ``timeout_s`` is the CPU budget of one task (a message, or an entity piece)."""

    def __init__(self, workers: int, timeout_s: float, memory_mb: int) -> None:
        self.timeout_s = timeout_s
        self.backstop_s = timeout_s * BACKSTOP_FACTOR
        self.workers = workers
        self.memory_mb = memory_mb
        self._pool = self._new_pool()
        self.pools_replaced = 0
        self._warm_s: float | None = None  # how long the current pool took to serve its first task
        self._pool_started = time.monotonic()
        self._outstanding: set[Future[Any]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._admitting = asyncio.Event()  # cleared while a retry runs alone
        self._admitting.set()
        self._alone = asyncio.Lock()  # one retry at a time

    @classmethod
    def for_settings(cls, settings: Settings) -> StageRunner:
        return cls(settings.stage_workers, settings.stage_timeout_s, settings.stage_memory_mb)

    def _new_pool(self) -> pebble.ProcessPool:
        return pebble.ProcessPool(
            max_workers=self.workers,
            initializer=_start_worker,
            initargs=(self.memory_mb,),
            # spawn, not fork: the parent runs an event loop and client threads.
            context=multiprocessing.get_context("spawn"),
        )

    async def _replace_pool(self, broken: pebble.ProcessPool, error: BaseException) -> None:
        """A new pool in place of ``broken`` (once, however many tasks saw it break).

        pebble gives up on its whole pool when a worker dies while no task runs
        (``BrokenProcessPool: All workers expired``), and every later submit fails.
        """
        if self._pool is not broken:
            return
        if self.pools_replaced:
            await asyncio.sleep(min(REPLACE_WAIT_CAP_S, 0.5 * self.pools_replaced))  # a pool that keeps breaking
        if self._pool is not broken:
            return
        self._pool = self._new_pool()
        self._pool_started, self._warm_s = time.monotonic(), None
        self.pools_replaced += 1
        log.warning("stage.pool_replaced", error=repr(error), replaced=self.pools_replaced)
        # Imported here: the stage workers import this module, and should not write metric files of their own.
        from newsflow.adapters import metrics

        metrics.pool_replaced()
        await asyncio.to_thread(_stop_pool, broken)

    async def _watch(self) -> None:
        """Replace a pool whose workers take no task: tasks queued and none running, for longer than a warm-up.

        A worker killed while it holds the task channel's lock leaves it held for
        good; the others then wait on it and no task is ever taken up again.
        """
        idle_with_work = 0.0
        while True:
            await asyncio.sleep(1.0)
            pending = [f for f in self._outstanding if not f.done()]
            idle_with_work = idle_with_work + 1.0 if pending and not any(f.running() for f in pending) else 0.0
            # Workers that pebble starts in place of dead ones take no task while they warm up.
            if self._warm_s is not None and idle_with_work >= max(WEDGED_AFTER_S, 1.5 * self._warm_s):
                idle_with_work = 0.0
                wedged = self._pool
                await self._replace_pool(wedged, TimeoutError(f"{len(pending)} tasks queued, none taken up"))
                for f in pending:
                    f.cancel()  # their submitters try again on the new pool

    async def start(self) -> None:
        """Wait until every worker has started (and warmed up)."""
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(), name="stage-pool-watchdog")
        try:
            await asyncio.gather(*(self._submit(_warm_up, (), {}, WARM_UP_TIMEOUT_S) for _ in range(self.workers)))
        except (FutureTimeout, TimeoutError) as exc:
            raise StageTimeout(f"stage workers not warm after {WARM_UP_TIMEOUT_S:g} s") from exc
        except pebble.ProcessExpired as exc:
            raise StageCrashed(f"a stage worker died warming up: {exc}") from exc

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` in a stage worker within the budget; StageTimeout if it overruns twice."""
        while not self._admitting.is_set():
            await self._admitting.wait()
        self._in_flight += 1
        self._idle.clear()
        try:
            return await self._attempt(fn, args, kwargs)
        except _Overrun as first:
            overrun = first
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        return await self._retry_alone(fn, args, kwargs, overrun)

    async def _retry_alone(
        self, fn: Callable[..., T], args: Sequence[Any], kwargs: Mapping[str, Any], first: _Overrun
    ) -> T:
        stage = getattr(fn, "__name__", repr(fn))
        async with self._alone:
            self._admitting.clear()
            try:
                while self._in_flight:
                    await self._idle.wait()
                log.warning("stage.overrun_retried_alone", stage=stage, overrun=str(first))
                try:
                    return await self._attempt(fn, args, kwargs)
                except _Overrun as second:
                    if second.died:
                        raise StageCrashed(f"stage worker died twice: {first}; tried alone: {second}") from second
                    raise StageTimeout(
                        f"stage over its {self.timeout_s:g} s budget twice: {first}; tried alone: {second}"
                    ) from second
            finally:
                self._admitting.set()

    async def _attempt(self, fn: Callable[..., T], args: Sequence[Any], kwargs: Mapping[str, Any]) -> T:
        try:
            return await self._submit(_within_budget, (self.timeout_s, fn, args, kwargs), {}, self.backstop_s)
        except OverBudget as exc:
            raise _Overrun(f"{exc.args[0]:.1f} s of CPU time") from exc
        except (FutureTimeout, TimeoutError) as exc:
            raise _Overrun(f"still running after {self.backstop_s:g} s of wall time") from exc
        except pebble.ProcessExpired as exc:  # killed from outside, or by the message itself: alone, we know which
            raise _Overrun(f"its worker died: {exc}", died=True) from exc

    async def _submit(self, fn: Callable[..., T], args: Sequence[Any], kwargs: Mapping[str, Any], wall_s: float) -> T:
        """One try on a worker; a broken pool is replaced and the task submitted again, never lost with it."""
        while True:
            pool = self._pool
            try:
                future = pool.submit(fn, wall_s, *args, **kwargs)
                self._outstanding.add(future)
                future.add_done_callback(self._outstanding.discard)
                waiting = asyncio.wrap_future(future)
                done, _ = await asyncio.wait({waiting}, timeout=wall_s + STUCK_GRACE_S)
                if not done:  # its result never came back
                    waiting.cancel()
                    await self._replace_pool(pool, TimeoutError(f"no result after {wall_s + STUCK_GRACE_S:g} s"))
                    continue
                if future.cancelled() and self._pool is not pool:
                    continue  # the watchdog gave up on a wedged pool
                if self._warm_s is None and pool is self._pool:
                    self._warm_s = time.monotonic() - self._pool_started
                return waiting.result()
            except MemoryError as exc:
                raise StageCrashed("stage ran out of its memory limit") from exc
            except (BrokenProcessPool, RuntimeError) as exc:
                if pool.active:  # the stage code's own RuntimeError
                    raise
                await self._replace_pool(pool, exc)

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        _stop_pool(self._pool)


def _stop_pool(pool: pebble.ProcessPool) -> None:
    pool.stop()  # type: ignore[no-untyped-call]  # pebble has no annotations
    pool.join(timeout=10)
