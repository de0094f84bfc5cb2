"""Stage workers: one message's time and memory are bounded, the pool survives the overrun, and entity work spreads over them."""

from __future__ import annotations

import os
import time

import pytest

from newsflow.domain.entities import extract
from newsflow.ingest import entity_plan
from newsflow.ingest.stage_runner import StageCrashed, StageRunner, StageTimeout
from newsflow.settings import Settings
from seed_articles import cleaned, long_text, seed_message


def sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def model_loaded() -> bool:
    from newsflow.domain import entities

    return entities._nlp.cache_info().currsize == 1


def allocate(mb: int) -> int:
    return len(bytearray(mb * 1024 * 1024))


async def test_overrunning_message_is_stopped_and_its_worker_replaced() -> None:
    runner = StageRunner(workers=1, timeout_s=0.5, memory_mb=0)
    try:
        first = await runner.run(sleep_then_pid, 0)
        started = time.monotonic()
        with pytest.raises(StageTimeout):
            await runner.run(sleep_then_pid, 30)
        assert time.monotonic() - started < 10, "the overrun was cut, not waited out"
        replacement = await runner.run(sleep_then_pid, 0)
        assert replacement != first, "the stuck worker was killed and a new one started"
        assert await runner.run(model_loaded), "the replacement loaded the model before its first message"
    finally:
        runner.close()


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
