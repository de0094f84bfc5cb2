"""`newsflow run --workers N`: N pipeline processes share the partitions of one consumer group."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from conftest import daemon_env, scalar, wait_until
from newsflow.adapters import kafka
from newsflow.app.daemon import run_services
from newsflow.app.publish import publish
from newsflow.settings import Settings

PARAGRAPH = "Harbour cranes stood still as dock workers and terminal operators negotiated through the night. "
WORKERS_SQL = "SELECT count(DISTINCT metadata->>'worker') FROM newsflow.events WHERE type = 'ArticleReceived'"


def _feed(path: Path, url_prefix: str, n: int) -> Path:
    """``n`` valid articles as JSON lines, from three outlets."""
    lines = [
        json.dumps(
            {
                "url": f"{url_prefix}/{i}",
                "source": f"outlet-{i % 3}",
                "fetched_at": "2022-09-20T10:00:00+00:00",
                "text": f"Item {url_prefix} {i}\n\n" + PARAGRAPH * 3,
            }
        )
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_two_pipeline_processes_share_the_stream_and_apply_each_message_once(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"batch_max_records": 20})
    await kafka.ensure_topics(settings.kafka_bootstrap, [(settings.raw_topic, 4), (settings.dlq_topic, 1)])
    stop = asyncio.Event()
    daemon = asyncio.create_task(run_services(settings, ("pipeline",), stop, pipeline_processes=2))
    published = 0
    try:
        # Keep publishing until both processes have applied records: the child joins the group a little later.
        for round_ in range(60):
            feed = _feed(tmp_path / f"round-{round_}.jsonl", f"https://harbour.invalid/{round_}", 20)
            published += await publish(settings.kafka_bootstrap, settings.raw_topic, [feed], progress=False)
            await asyncio.sleep(0.5)
            if await scalar(pool, WORKERS_SQL) >= 2:
                break
        assert await scalar(pool, WORKERS_SQL) == 2, "the second pipeline process never applied a record"
        await wait_until(lambda: _all_received(pool, published), timeout_s=90, what=f"{published} articles received")
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 60)
    async with pool.acquire() as conn:
        received = await conn.fetchval("SELECT count(*) FROM newsflow.events WHERE type = 'ArticleReceived'")
        distinct = await conn.fetchval(
            "SELECT count(DISTINCT (metadata->'causation'->>'partition', metadata->'causation'->>'offset'))"
            " FROM newsflow.events WHERE type = 'ArticleReceived'"
        )
    assert received == distinct == published


async def _all_received(pool: asyncpg.Pool, n: int) -> bool:
    return await scalar(pool, "SELECT count(*) FROM newsflow.events WHERE type = 'ArticleReceived'") >= n


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(c) for c in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_child_pipeline_processes_stop_when_their_parent_is_killed(settings: Settings, tmp_path: Path) -> None:
    env = daemon_env(settings, tmp_path)
    parent = subprocess.Popen([sys.executable, "-m", "newsflow", "run", "pipeline", "--workers", "2"], env=env)  # noqa: ASYNC220  (the test reads its pid tree)
    try:
        deadline = time.monotonic() + 60
        while not [c for c in _children(parent.pid) if _cmdline(c).endswith("run pipeline")]:
            assert time.monotonic() < deadline, "the child pipeline process never started"
            await asyncio.sleep(0.2)
        (child,) = [c for c in _children(parent.pid) if _cmdline(c).endswith("run pipeline")]
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 45
        while _alive(child):
            assert time.monotonic() < deadline, "the orphaned child pipeline process kept running"
            await asyncio.sleep(0.2)
    finally:
        if parent.poll() is None:
            parent.kill()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except FileNotFoundError:
        return ""


def _pipeline_children(parent: int) -> list[int]:
    return [c for c in _children(parent) if _cmdline(c).endswith("run pipeline") and _alive(c)]


async def _one_child(parent: subprocess.Popen[bytes], other_than: int | None = None) -> int:
    deadline = time.monotonic() + 60
    while True:
        children = [c for c in _pipeline_children(parent.pid) if c != other_than]
        if children:
            return children[0]
        assert parent.poll() is None, f"the parent exited ({parent.returncode})"
        assert time.monotonic() < deadline, "no child pipeline process started"
        await asyncio.sleep(0.2)


async def test_a_killed_child_pipeline_process_is_restarted_and_nothing_is_lost_or_doubled(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await kafka.ensure_topics(settings.kafka_bootstrap, [(settings.raw_topic, 4), (settings.dlq_topic, 1)])
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log_file:
        parent = subprocess.Popen(  # noqa: ASYNC220  (the test reads its pid tree)
            [sys.executable, "-m", "newsflow", "run", "pipeline", "--workers", "2"],
            env=daemon_env(settings, tmp_path, NEWSFLOW_LOG_LEVEL="info", NEWSFLOW_LOG_FORMAT="json"),
            stderr=log_file,
        )
    try:
        first = await _one_child(parent)
        feed = _feed(tmp_path / "feed.jsonl", "https://restart.invalid", 80)
        published = await publish(settings.kafka_bootstrap, settings.raw_topic, [feed], progress=False)
        await asyncio.sleep(1)
        await wait_until(lambda: _has_joined(tmp_path / "health.child-1.json"), what="the child to join the group")
        os.kill(first, signal.SIGKILL)
        second = await _one_child(parent, other_than=first)
        assert second != first and parent.poll() is None, "the parent restarted the child instead of stopping"
        await wait_until(lambda: _all_received(pool, published), timeout_s=120, what=f"{published} articles")
        assert parent.poll() is None
        await wait_until(lambda: _child_restart_shown(settings, tmp_path), what="status to show the restart")
    finally:
        parent.send_signal(signal.SIGTERM)
        parent.wait(60)
    async with pool.acquire() as conn:
        received = await conn.fetchval("SELECT count(*) FROM newsflow.events WHERE type = 'ArticleReceived'")
        offsets = await conn.fetchval("SELECT sum(next_offset) FROM newsflow.consumer_offsets")
    assert received == offsets == published, "each message applied once"
    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    removed = [e for e in events if e["event"] == "group.dead_member_removed"]
    assert [e["why"] for e in removed] == ["child 1 exited"], "the dead child's partitions waited for its session"


async def _has_joined(health_file: Path) -> bool:
    """The child wrote its group member id (a successor removes that member when the child dies)."""
    try:
        return bool(json.loads(await asyncio.to_thread(health_file.read_text)).get("member_id"))
    except (OSError, ValueError):
        return False


async def _child_restart_shown(settings: Settings, state_dir: Path) -> bool:
    """`newsflow status` counts the restart, and says ready once the new child runs."""
    done = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "newsflow",
        "status",
        "--json",
        env=daemon_env(settings, state_dir),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await done.communicate()
    daemon = json.loads(out)["daemon"]
    child = daemon["processes"]["health.json"]["children"]["1"]
    return bool(child["restarts"] == 1 and child["running"] and daemon["readiness"] == "ready")
