"""Stage workers: one message's CPU time and memory are bounded, load never turns good input into a timeout,
an overrun is retried alone, and entity work spreads over the workers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from newsflow.domain import stages
from newsflow.domain.contract import RawArticleV1
from newsflow.domain.entities import extract
from newsflow.ingest import entity_plan
from newsflow.ingest.stage_runner import StageCrashed, StageRunner, StageTimeout
from newsflow.samples import SEEDS
from newsflow.settings import Settings
from seed_articles import cleaned, long_text, seed_message

# Many tiny paragraphs: trafilatura needs minutes for this page (super-linear).
PATHOLOGICAL_PAGE = "<html><body>" + "<div><p>short text</p></div>" * 32000


def sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def model_loaded() -> bool:
    from newsflow.domain import entities

    return entities._nlp.cache_info().currsize == len(entities.WARM_LANGUAGES)


def allocate(mb: int) -> int:
    return len(bytearray(mb * 1024 * 1024))


def burn_cpu(cpu_s: float) -> float:
    """Work for ``cpu_s`` of this process's CPU time, however long that takes on the clock."""
    started = time.process_time()
    while time.process_time() - started < cpu_s:
        pass
    return cpu_s


def spin_swallowing_exceptions() -> str:
    """Stage code with a broad ``except Exception`` around an endless loop."""
    while True:
        try:
            while True:
                pass
        except Exception:  # noqa: BLE001  (the point: stage code that catches broadly)
            return "swallowed"


def sum_in_c() -> int:
    """Hours of CPU in one C call that never returns to the interpreter, so no signal handler runs."""
    return sum(range(10**12))


def overrun_first_time(marker: Path, running: Path) -> int:
    """Spins past any budget on the first attempt; on the second, how many other tasks run beside it."""
    if not marker.exists():
        marker.touch()
        while True:
            pass
    return len(list(running.iterdir()))


def neighbour(running: Path, seconds: float) -> int:
    me = running / uuid.uuid4().hex
    me.touch()
    try:
        time.sleep(seconds)
        return os.getpid()
    finally:
        me.unlink()


def page(html: str) -> RawArticleV1:
    return RawArticleV1.model_validate(
        {"url": "https://slow.example/", "source": "Test Wire", "fetched_at": "2022-09-15T10:00:00+00:00", "html": html}
    )


@contextmanager
def cpu_burners() -> Iterator[None]:
    """More busy-looping processes than there are cores, for as long as the block runs."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range((os.cpu_count() or 2) + 1)]
    try:
        yield
    finally:
        for b in burners:
            b.kill()
        for b in burners:
            b.wait()


async def test_message_over_its_cpu_budget_is_stopped_in_a_worker_that_stays_warm() -> None:
    runner = StageRunner(workers=1, timeout_s=0.5, memory_mb=0)
    try:
        first = await runner.run(sleep_then_pid, 0)
        with pytest.raises(StageTimeout, match="CPU time"):
            await runner.run(burn_cpu, 3600)
        with pytest.raises(StageTimeout):
            await runner.run(spin_swallowing_exceptions)
        assert await runner.run(sleep_then_pid, 0) == first, "the worker was stopped in its stage code, not killed"
    finally:
        runner.close()


async def test_waiting_is_not_work_a_message_slow_on_the_clock_only_passes() -> None:
    runner = StageRunner(workers=1, timeout_s=0.5, memory_mb=0)
    try:
        first = await runner.run(sleep_then_pid, 0)
        assert await runner.run(sleep_then_pid, 1.0) == first, "twice the budget in wall time, without overrun"
    finally:
        runner.close()


async def test_code_that_never_returns_to_python_is_cut_by_the_wall_clock_backstop() -> None:
    runner = StageRunner(workers=1, timeout_s=0.5, memory_mb=0)
    try:
        first = await runner.run(sleep_then_pid, 0)
        async with asyncio.timeout(120):  # the C call alone would run for hours
            with pytest.raises(StageTimeout, match="wall time"):
                await runner.run(sum_in_c)
        replacement = await runner.run(sleep_then_pid, 0)
        assert replacement != first, "the stuck worker was killed and a new one started"
        assert await runner.run(model_loaded), "the replacement loaded the warm models before its first message"
    finally:
        runner.close()


async def test_an_overrunning_message_is_retried_with_nothing_else_in_flight(tmp_path: Path) -> None:
    running = tmp_path / "running"
    running.mkdir()
    runner = StageRunner(workers=2, timeout_s=0.5, memory_mb=0)
    retried = asyncio.Event()

    async def keep_feeding() -> int:
        n = 0
        while not retried.is_set():
            await runner.run(neighbour, running, 0.1)
            n += 1
        return n

    try:
        await runner.start()
        feeders = [asyncio.ensure_future(keep_feeding()) for _ in range(3)]
        beside_the_retry = await runner.run(overrun_first_time, tmp_path / "tried", running)
        retried.set()
        fed = await asyncio.gather(*feeders)
    finally:
        runner.close()
    assert beside_the_retry == 0, "no other task ran while the overrunning message was tried again"
    assert all(n > 0 for n in fed), "the other submissions went on before and after the retry"


async def test_under_full_load_good_messages_pass_and_a_pathological_page_is_still_rejected() -> None:
    """The budget is the message's own work: burners on every core slow every task on the clock, and only
    the page whose own work exceeds the budget is rejected, twice tried."""
    seeds = [seed_message(p.name) for p in sorted(SEEDS.glob("*.txt"))]
    text = long_text()
    runner = StageRunner(workers=2, timeout_s=1.0, memory_mb=Settings().stage_memory_mb)
    try:
        await runner.start()
        with cpu_burners():
            slow = asyncio.gather(
                *(runner.run(stages.enrich, m) for m in seeds),
                *(runner.run(burn_cpu, 0.6) for _ in range(4)),  # most of the budget: over 1 s on a busy clock
                entity_plan.extract(runner, text, "en"),
            )
            with pytest.raises(StageTimeout, match="CPU time"):
                await runner.run(stages.enrich, page(PATHOLOGICAL_PAGE))
            *enriched, entities_found = await slow
    finally:
        runner.close()
    assert [type(e).__name__ for e in enriched[: len(seeds)]] == ["Enriched"] * len(seeds)
    assert enriched[len(seeds) :] == [0.6] * 4
    assert entities_found == extract(text, "en")


async def test_message_over_the_memory_limit_fails_alone() -> None:
    runner = StageRunner(workers=1, timeout_s=30, memory_mb=Settings().stage_memory_mb)  # warm, as in production
    try:
        with pytest.raises(StageCrashed):
            await runner.run(allocate, 4096)
        assert await runner.run(allocate, 64) == 64 * 1024 * 1024
    finally:
        runner.close()


async def test_pieces_on_several_stage_workers_give_the_same_entities_as_one_pass() -> None:
    text = long_text()
    runner = StageRunner(workers=2, timeout_s=60, memory_mb=0)
    try:
        parallel = await entity_plan.extract(runner, text, "en")
    finally:
        runner.close()
    assert parallel == extract(text, "en")
    found = {e["name"]: e for e in parallel.entities}
    one_copy = {e["name"]: e for e in extract(cleaned(seed_message("000_0a4c76719d70d0cd.txt")).text, "en").entities}
    assert found["Vladimir Putin"]["count"] > one_copy["Vladimir Putin"]["count"], "mentions from every piece count"


def worker_pids(other_than: frozenset[int] = frozenset()) -> list[int]:
    """This process's live stage workers (pebble names its worker processes), but those in ``other_than``."""
    import multiprocessing

    return [
        p.pid
        for p in multiprocessing.active_children()
        if p.pid and "pebble" in p.name.lower() and p.pid not in other_than
    ]


async def test_a_stage_worker_killed_idle_or_busy_costs_no_message() -> None:
    """SIGKILL from outside: an idle worker (pebble then abandons the whole pool) and one mid-message."""
    others = frozenset(worker_pids())  # pools that earlier tests in this process left behind
    runner = StageRunner(workers=2, timeout_s=30.0, memory_mb=0)
    try:
        await runner.start()
        idle = worker_pids(others)
        assert len(idle) == 2, idle
        os.kill(idle[0], 9)
        await asyncio.sleep(1.0)  # let pebble notice the death while nothing runs
        assert await runner.run(sleep_then_pid, 0) > 0, "the next message still runs"
        busy = asyncio.ensure_future(runner.run(sleep_then_pid, 3.0))
        await asyncio.sleep(1.0)
        for pid in worker_pids(others):
            os.kill(pid, 9)
        assert await busy > 0, "the message whose worker was killed ran again, alone"
        results = await asyncio.gather(*(runner.run(sleep_then_pid, 0.1) for _ in range(6)))
        assert all(pid > 0 for pid in results)
    finally:
        runner.close()
