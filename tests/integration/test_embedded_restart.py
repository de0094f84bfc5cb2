"""`newsflow run --embedded` killed and started again: it keeps the broker and PostgreSQL that still live.

Each test runs the daemon as a child process on its own state directory, so the
daemon starts its own tansu broker and PostgreSQL; faults are real SIGKILLs.
Every process a test causes to exist is stopped in its ``finally``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from conftest import RECEIVED_SQL, wait_until
from newsflow.adapters import kafka, postgres
from newsflow.app.publish import publish

PARTITIONS = 2
START_S = 180.0  # a first start runs initdb and loads the entity model on two shared cores
DISTINCT_SOURCES_SQL = (
    "SELECT count(DISTINCT (metadata->'causation'->>'cluster_id', metadata->'causation'->>'partition',"
    " metadata->'causation'->>'offset')) FROM newsflow.events WHERE type = 'ArticleReceived'"
)
RESETS_SQL = "SELECT payload FROM newsflow.events WHERE type = 'ConsumerOffsetsReset' ORDER BY position"


def embedded_env(state: Path) -> dict[str, str]:
    """A daemon environment with nothing but the state directory: the embedded stack supplies the endpoints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSFLOW_")}
    return {
        **env,
        "NEWSFLOW_STATE_DIR": str(state),
        "NEWSFLOW_RAW_PARTITIONS": str(PARTITIONS),
        "NEWSFLOW_STAGE_WORKERS": "1",
        "NEWSFLOW_BATCH_TIMEOUT_MS": "100",
        "NEWSFLOW_POLL_INTERVAL_S": "0.2",
        "NEWSFLOW_LOG_FORMAT": "json",
        "NEWSFLOW_LOG_LEVEL": "info",
    }


def start_daemon(state: Path, name: str) -> subprocess.Popen[bytes]:
    with (state.parent / f"{name}.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "newsflow", "run", "--embedded"], env=embedded_env(state), stdout=out, stderr=out
        )


def daemon_logs(state: Path, tail: int = 4000) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-tail:]}" for p in sorted(state.parent.glob("*.log")))


def endpoints(state: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((state / "endpoints.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


async def endpoints_of(state: Path, daemon: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The endpoints file once ``daemon`` has written it."""

    async def written() -> bool:
        assert daemon.poll() is None, f"the daemon exited with {daemon.returncode}:\n{daemon_logs(state)}"
        return endpoints(state).get("daemon_pid") == daemon.pid

    await wait_until(written, timeout_s=START_S, what="the daemon's endpoints file")
    return endpoints(state)


def tansu_pids(state: Path, log_name: str = "broker.log") -> list[int]:
    """Every tansu process writing to this state directory's broker log."""
    log = (state / log_name).resolve()
    pids = []
    for p in psutil.process_iter(["name"]):
        if p.info["name"] == "tansu":
            with suppress(psutil.Error):
                if any(Path(f.path) == log for f in p.open_files()):
                    pids.append(p.pid)
    return sorted(pids)


def alive(pid: int) -> bool:
    assert isinstance(pid, int) and pid > 0, f"not a process id: {pid!r}"
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_and_wait(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    assert isinstance(pid, int) and pid > 0, f"not a process id: {pid!r}"
    with suppress(psutil.NoSuchProcess):
        process = psutil.Process(pid)
        process.send_signal(sig)
        process.wait(60)


def postmaster_pid(state: Path) -> int | None:
    try:
        pid = int((state / "pgdata" / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None


@contextmanager
def reaped(state: Path, daemons: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    """Whatever happens in the block: the daemons, their brokers and their PostgreSQL end with it."""
    try:
        yield
    finally:
        for daemon in daemons:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(30)
        for pid in tansu_pids(state):
            kill_and_wait(pid)
        pg = postmaster_pid(state)
        if pg is not None and alive(pg) and str(state.resolve() / "pgdata") in psutil.Process(pg).cmdline():
            kill_and_wait(pg, signal.SIGINT)  # fast shutdown


def unrelated_process() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "600"])


def feed(path: Path, prefix: str, n: int) -> Path:
    path.write_text(
        "".join(
            json.dumps(
                {
                    "url": f"https://wire.example/{prefix}/{i}",
                    "source": "Wire",
                    "fetched_at": "2022-09-15T10:00:00+00:00",
                    "text": f"{prefix} story {i}\n\nBody of the {prefix} story number {i}, about nothing else.",
                }
            )
            + "\n"
            for i in range(n)
        )
    )
    return path


async def publish_feed(bootstrap: str, path: Path, n: int) -> None:
    assert await publish(bootstrap, "newsflow.raw-articles", [path], progress=False) == n


@asynccontextmanager
async def database(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await postgres.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def count(url: str, sql: str) -> int:
    """A count over a fresh connection: the daemon may be restarting the server's clients under us."""
    async with database(url) as conn:
        return int(await conn.fetchval(sql))


async def applied(url: str, n: int) -> None:
    async def reached() -> bool:
        try:
            return await count(url, RECEIVED_SQL) >= n
        except (OSError, asyncpg.PostgresError):
            return False  # the migrations have not created the tables yet

    await wait_until(reached, timeout_s=START_S, what=f"{n} articles received")


async def newsflow_status(state: Path, *args: str) -> str:
    """`newsflow status`, as an operator runs it: endpoints from the state directory's file."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "newsflow", "status", *args, env=embedded_env(state), stdout=subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out.decode()


async def status_json(state: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(await newsflow_status(state, "--json"))
    return data


async def caught_up(state: Path) -> dict[str, Any]:
    """The status once every partition's stored offset has reached its log end."""
    latest: dict[str, Any] = {}

    async def no_lag() -> bool:
        latest.update(await status_json(state))
        return latest["total_lag"] == 0 and len(latest["consumer_lag"]) == PARTITIONS

    await wait_until(no_lag, timeout_s=60, interval_s=1.0, what="status lag 0")
    return latest


async def stop_cleanly(state: Path, daemon: subprocess.Popen[bytes], ep: dict[str, Any]) -> None:
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(60) == 0
    assert not alive(ep["broker"]["pid"]) and not alive(ep["postgres"]["pid"])
    assert not (state / "endpoints.json").exists() and tansu_pids(state) == []


async def test_daemon_killed_then_started_again_reads_what_the_orphan_broker_queued(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    daemons = [start_daemon(state, "first")]
    with reaped(state, daemons):
        first = await endpoints_of(state, daemons[0])
        bootstrap, url = first["kafka_bootstrap"], first["database_url"]
        await kafka.ensure_topics(bootstrap, [("newsflow.raw-articles", PARTITIONS)])
        await publish_feed(bootstrap, feed(tmp_path / "before.jsonl", "before", 8), 8)
        await applied(url, 8)

        daemons[0].send_signal(signal.SIGKILL)
        daemons[0].wait(30)
        assert alive(first["broker"]["pid"]) and alive(first["postgres"]["pid"])
        await publish_feed(bootstrap, feed(tmp_path / "queued.jsonl", "queued", 6), 6)

        daemons.append(start_daemon(state, "second"))
        second = await endpoints_of(state, daemons[1])
        assert second["broker"] == first["broker"] and second["kafka_bootstrap"] == bootstrap
        assert second["postgres"] == first["postgres"]
        assert tansu_pids(state) == [first["broker"]["pid"]]
        assert json.loads((state / "pgdata" / ".handle_pids.json").read_text()) == [daemons[1].pid]

        await applied(url, 14)
        status = await caught_up(state)
        assert status["offsets_resets"] == []
        assert sum(v["stored_offset"] for v in status["consumer_lag"].values()) == 14
        assert await count(url, RECEIVED_SQL) == await count(url, DISTINCT_SOURCES_SQL) == 14
        assert await count(url, "SELECT count(*) FROM newsflow.events WHERE type = 'ConsumerOffsetsReset'") == 0
        await stop_cleanly(state, daemons[1], second)


async def test_broker_gone_with_the_daemon_is_replaced_and_status_shows_what_the_lost_log_held(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    daemons = [start_daemon(state, "first")]
    with reaped(state, daemons):
        first = await endpoints_of(state, daemons[0])
        url = first["database_url"]
        await kafka.ensure_topics(first["kafka_bootstrap"], [("newsflow.raw-articles", PARTITIONS)])
        await publish_feed(first["kafka_bootstrap"], feed(tmp_path / "before.jsonl", "before", 7), 7)
        await applied(url, 7)

        daemons[0].send_signal(signal.SIGKILL)
        daemons[0].wait(30)
        kill_and_wait(first["broker"]["pid"])

        daemons.append(start_daemon(state, "second"))
        second = await endpoints_of(state, daemons[1])
        assert second["broker"]["pid"] != first["broker"]["pid"]
        assert second["broker"]["cluster_id"] != first["broker"]["cluster_id"]
        assert second["postgres"] == first["postgres"]
        assert tansu_pids(state) == [second["broker"]["pid"]]
        await kafka.ensure_topics(second["kafka_bootstrap"], [("newsflow.raw-articles", PARTITIONS)])
        await publish_feed(second["kafka_bootstrap"], feed(tmp_path / "after.jsonl", "after", 3), 3)
        await applied(url, 10)

        async with database(url) as conn:
            resets = [r["payload"] for r in await conn.fetch(RESETS_SQL)]
        assert {r["reason"] for r in resets} == {"broker_changed"}
        assert {r["stored_cluster_id"] for r in resets} == {first["broker"]["cluster_id"]}
        assert sum(r["stored_offset"] for r in resets) == 7

        status = await caught_up(state)
        [summary] = status["offsets_resets"]
        assert summary["applied_from_lost_log"] == 7 and summary["lost_cluster_id"] == first["broker"]["cluster_id"]
        text = await newsflow_status(state)
        assert "broker replaced at" in text and "7 offsets applied from the old log" in text, text
        await stop_cleanly(state, daemons[1], second)


async def test_broker_killed_under_the_daemon_comes_back_on_its_port_and_no_second_daemon_starts(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    daemons = [start_daemon(state, "daemon")]
    with reaped(state, daemons):
        first = await endpoints_of(state, daemons[0])
        bootstrap, url = first["kafka_bootstrap"], first["database_url"]
        await kafka.ensure_topics(bootstrap, [("newsflow.raw-articles", PARTITIONS)])
        await publish_feed(bootstrap, feed(tmp_path / "before.jsonl", "before", 5), 5)
        await applied(url, 5)

        second = start_daemon(state, "second")
        daemons.append(second)
        assert second.wait(120) == 2, daemon_logs(state)
        assert "already runs on" in (tmp_path / "second.log").read_text()
        assert endpoints(state) == first and tansu_pids(state) == [first["broker"]["pid"]]

        kill_and_wait(first["broker"]["pid"])

        async def replaced() -> bool:
            assert daemons[0].poll() is None, "the daemon stopped with its broker"
            return endpoints(state).get("broker", {}).get("pid") not in (None, first["broker"]["pid"])

        await wait_until(replaced, what="a new broker in the endpoints file")
        now = endpoints(state)
        assert now["kafka_bootstrap"] == bootstrap and now["broker"]["port"] == first["broker"]["port"]
        assert now["broker"]["cluster_id"] != first["broker"]["cluster_id"]
        assert tansu_pids(state) == [now["broker"]["pid"]]

        async def repositioned() -> bool:
            return await count(url, "SELECT count(*) FROM newsflow.events WHERE type = 'ConsumerOffsetsReset'") > 0

        await wait_until(repositioned, timeout_s=60, what="the pipeline positioned on the new broker")
        # No ensure_topics here: the daemon gave the new broker its topics.
        await publish_feed(bootstrap, feed(tmp_path / "after.jsonl", "after", 4), 4)
        await applied(url, 9)
        async with database(url) as conn:
            resets = [r["payload"] for r in await conn.fetch(RESETS_SQL)]
        assert {(r["reason"], r["cluster_id"]) for r in resets} == {("broker_changed", now["broker"]["cluster_id"])}
        assert sum(r["stored_offset"] for r in resets) == 5
        assert "embedded.broker_restarted" in (tmp_path / "daemon.log").read_text()
        await caught_up(state)
        await stop_cleanly(state, daemons[0], now)


async def test_everything_killed_and_the_pid_file_naming_another_process_still_restarts_on_the_kept_data(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    daemons = [start_daemon(state, "first")]
    stranger = unrelated_process()
    try:
        with reaped(state, daemons):
            first = await endpoints_of(state, daemons[0])
            url = first["database_url"]
            await kafka.ensure_topics(first["kafka_bootstrap"], [("newsflow.raw-articles", PARTITIONS)])
            await publish_feed(first["kafka_bootstrap"], feed(tmp_path / "before.jsonl", "before", 3), 3)
            await applied(url, 3)

            daemons[0].send_signal(signal.SIGKILL)
            daemons[0].wait(30)
            kill_and_wait(first["broker"]["pid"])
            backends = psutil.Process(first["postgres"]["pid"]).children()
            kill_and_wait(first["postgres"]["pid"])
            psutil.wait_procs(backends, timeout=60)
            # A pid is reused by whatever starts next; here the stranger has it.
            pid_file = state / "pgdata" / "postmaster.pid"
            lines = pid_file.read_text().split("\n")
            pid_file.write_text("\n".join([str(stranger.pid), *lines[1:]]))

            daemons.append(start_daemon(state, "second"))
            second = await endpoints_of(state, daemons[1])
            assert second["postgres"]["pid"] not in (first["postgres"]["pid"], stranger.pid)
            assert alive(second["postgres"]["pid"]) and stranger.poll() is None
            assert json.loads((state / "pgdata" / ".handle_pids.json").read_text()) == [daemons[1].pid]
            await kafka.ensure_topics(second["kafka_bootstrap"], [("newsflow.raw-articles", PARTITIONS)])
            await publish_feed(second["kafka_bootstrap"], feed(tmp_path / "after.jsonl", "after", 2), 2)
            await applied(url, 5)
            async with database(url) as conn:
                resets = [r["payload"] for r in await conn.fetch(RESETS_SQL)]
            assert sum(r["stored_offset"] for r in resets) == 3  # the offsets stored before the kill survived
            await stop_cleanly(state, daemons[1], second)
    finally:
        stranger.kill()
        stranger.wait()
