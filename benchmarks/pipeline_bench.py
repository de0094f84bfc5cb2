"""End-to-end benchmark: real broker, real pipeline processes, real PostgreSQL (`make bench`).

    python -m benchmarks.pipeline_bench [--articles 1300] [--latency-seconds 45]
        [--scaling] [--skip-latency] [--cluster-large 20000] [--seed 1] [--out-dir .newsflow/bench]

Starts a private PostgreSQL and a tansu broker under a temporary directory, runs
``newsflow run pipeline``, ``newsflow run clusterer`` and ``newsflow run projector``
as separate OS processes against them, pushes a stream built from real article
text (``benchmarks.stream``) through, and measures:

1. throughput: all messages produced as fast as the producer goes (one record per
   request, see README "Known limits of the embedded broker"); from the first
   produce until the last article is visible in ``projection.articles`` with a
   ``story_id``; per-phase time from the pipeline's ``batch.committed`` log lines;
   events appended per second; peak RSS of every process tree (``/proc`` VmHWM);
2. baselines on the same data: raw aiokafka consume of the same topic, raw
   ``postgres.append`` of the same events in batches of the same sizes, each stage
   alone in one process (entities on the pipeline's cleaned texts);
3. latency: a fresh database and topic, the stream offered at half the measured
   throughput; produce time per URL vs the first time (polled every 50 ms) it is in
   ``projection.articles`` with a story;
4. scaling (``--scaling``): two pipeline processes in one consumer group;
5. clustering cost growth: ``OnlineClusterer.add`` with 1,000 vs ``--cluster-large``
   articles already clustered;
6. metrics cost (``--metrics-cost N``): N rounds of a throughput run with the metrics
   endpoint off and one with it on (each service its own port and state directory,
   scraped every ``SCRAPE_EVERY_S``), the order swapped every round.

Progress goes to stderr; the LAST stdout line is the JSON summary, also written to
``<out-dir>/summary-<timestamp>.json`` and ``<out-dir>/bench-latest.json``.
Every process started here is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks import baselines
from benchmarks.stream import BenchMessage, Stream, build_stream

NEWSFLOW = Path(sys.executable).parent / "newsflow"
PAGE_KB = 1024


def progress(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- /proc: process trees and peak RSS -------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")
_CPU_TICKS: dict[tuple[int, int], int] = {}  # (pid, start) → utime + stime, from the latest table


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid → (ppid, start time in ticks) for every process (CPU ticks kept in ``_CPU_TICKS``)."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[19]))
        _CPU_TICKS[(int(entry.name), int(fields[19]))] = int(fields[11]) + int(fields[12])
    return table


def _status_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


@dataclass
class TreeMemory:
    """Peak RSS of a process and all its descendants, sampled from /proc."""

    name: str
    root: int
    hwm_kb: dict[tuple[int, int], int] = field(default_factory=dict)  # (pid, start) → VmHWM
    peak_concurrent_kb: int = 0
    pids_seen: set[tuple[int, int]] = field(default_factory=set)
    cpu_ticks: dict[tuple[int, int], int] = field(default_factory=dict)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) used so far by the tree (exited members: as last seen)."""
        return sum(self.cpu_ticks.values()) / CLK_TCK

    def sample(self, table: dict[int, tuple[int, int]]) -> None:
        if self.root not in table:
            return
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        todo, rss_now = [self.root], 0
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, []))
            key = (pid, table[pid][1])
            status = _status_kb(pid)
            if not status:
                continue
            self.pids_seen.add(key)
            self.cpu_ticks[key] = _CPU_TICKS.get(key, 0)
            self.hwm_kb[key] = max(self.hwm_kb.get(key, 0), status.get("VmHWM", 0))
            rss_now += status.get("VmRSS", 0)
        self.peak_concurrent_kb = max(self.peak_concurrent_kb, rss_now)

    def report(self) -> dict[str, Any]:
        return {
            "peak_rss_mb": round(sum(self.hwm_kb.values()) / PAGE_KB, 1),
            "peak_rss_mb_concurrent": round(self.peak_concurrent_kb / PAGE_KB, 1),
            "processes": len(self.hwm_kb),
            "largest_process_mb": round(max(self.hwm_kb.values(), default=0) / PAGE_KB, 1),
        }


# --- the services as OS processes ---------------------------------------------------------------------------


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    memory: TreeMemory


class Services:
    """``newsflow run <service>`` processes for one run; stopped with SIGTERM, then SIGKILL.

    With ``metrics`` each service serves its endpoint on a port of its own, with a state
    directory of its own (a daemon empties its metric files when it starts).
    """

    def __init__(self, workdir: Path, env: dict[str, str], metrics: bool = False) -> None:
        self.workdir = workdir
        self.env = env
        self.metrics_ports: dict[str, int] | None = {} if metrics else None
        self.items: list[Service] = []
        self._sampler: asyncio.Task[None] | None = None
        self.all_seen: set[tuple[int, int]] = set()

    def start(self, name: str, service: str, level: str = "warning") -> Service:
        log_path = self.workdir / f"{name}.log"
        env = {**self.env, "NEWSFLOW_LOG_LEVEL": level, "NEWSFLOW_METRICS_PORT": "0"}
        if self.metrics_ports is not None:
            self.metrics_ports[name] = _free_port()
            env["NEWSFLOW_METRICS_PORT"] = str(self.metrics_ports[name])
            env["NEWSFLOW_STATE_DIR"] = str(self.workdir / f"state-{name}")
        with open(log_path, "ab") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [str(NEWSFLOW), "run", service],
                env=env,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        svc = Service(name, proc, log_path, TreeMemory(name, proc.pid))
        self.items.append(svc)
        return svc

    def check_alive(self) -> None:
        for s in self.items:
            if s.process.poll() is not None:
                tail = s.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"service {s.name} exited with {s.process.returncode}; log tail:\n{tail}")

    def sample(self) -> None:
        table = _proc_table()
        for s in self.items:
            s.memory.sample(table)
            self.all_seen |= s.memory.pids_seen

    async def _sample_loop(self, every_s: float) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(every_s)

    def start_sampling(self, every_s: float = 0.5) -> None:
        self._sampler = asyncio.ensure_future(self._sample_loop(every_s))

    async def stop(self, timeout_s: float = 20.0) -> None:
        if self._sampler:
            self._sampler.cancel()
            self._sampler = None
        self.sample()
        for s in self.items:
            if s.process.poll() is None:
                s.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for s in self.items:
            while s.process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110  (a Popen has no awaitable exit)
                await asyncio.sleep(0.1)
            if s.process.poll() is None:
                s.process.kill()
                s.process.wait()
        kill_leftovers(self.all_seen)

    def memory(self) -> dict[str, dict[str, Any]]:
        return {s.name: s.memory.report() for s in self.items}

    def cpu_s(self) -> dict[str, float]:
        self.sample()
        return {s.name: s.memory.cpu_s() for s in self.items}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SCRAPE_EVERY_S = 5.0  # Prometheus in docker-compose.yml scrapes every 15 s: this is three times that load


async def scrape_loop(ports: dict[str, int], scrapes: list[float]) -> None:
    """GET every service's /metrics every ``SCRAPE_EVERY_S``, as Prometheus would; each scrape's seconds kept."""

    def get(port: int) -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            response.read()

    while True:
        for port in ports.values():
            started = time.perf_counter()
            with contextlib.suppress(OSError):
                await asyncio.to_thread(get, port)
                scrapes.append(time.perf_counter() - started)
        await asyncio.sleep(SCRAPE_EVERY_S)


def kill_leftovers(seen: set[tuple[int, int]]) -> None:
    """SIGKILL descendants we saw (same pid and start time) that outlived their parent, e.g. stage workers."""
    table = _proc_table()
    for pid, start in seen:
        if pid in table and table[pid][1] == start and pid != os.getpid():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def service_names() -> list[str]:
    """The services `newsflow run` knows (the clusterer is a separate service once it exists)."""
    out = subprocess.run([str(NEWSFLOW), "run", "--help"], capture_output=True, text=True, check=False).stdout
    return [s for s in ("pipeline", "clusterer", "projector") if s in out]


# --- log parsing ---------------------------------------------------------------------------------------------


def log_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def _ts(entry: dict[str, Any]) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(entry.get("timestamp", "")).replace("Z", "+00:00"))
    except ValueError:
        return None


def batch_stats(paths: Sequence[Path], since: dt.datetime) -> dict[str, Any]:
    """Per-phase time of the pipeline's committed batches after ``since`` (from ``batch.committed``)."""
    batches = []
    for path in paths:
        for e in log_lines(path):
            ts = _ts(e)
            if e.get("event") == "batch.committed" and ts is not None and ts >= since:
                batches.append(e)
    records = sum(int(b.get("records", 0)) for b in batches)
    phases: dict[str, float] = {}
    for b in batches:
        for k, v in (b.get("ms") or {}).items():
            phases[k] = phases.get(k, 0.0) + float(v)
    total_ms = sum(phases.values())
    return {
        "batches": len(batches),
        "records": records,
        "mean_records_per_batch": round(records / len(batches), 1) if batches else None,
        "events_per_batch": [int(b.get("events", 0)) for b in batches],
        "ms_total": {k: round(v, 1) for k, v in phases.items()},
        "ms_per_article": {k: round(v / records, 2) for k, v in phases.items()} if records else {},
        "share": {k: round(v / total_ms, 3) for k, v in phases.items()} if total_ms else {},
    }


# --- database helpers ------------------------------------------------------------------------------------------

STORY_COUNT_SQL = "SELECT count(*) FROM projection.articles WHERE story_id IS NOT NULL"
REJECTED_SQL = "SELECT count(*) FROM projection.rejections"


async def fresh_database(pg: Any, name: str) -> str:
    from newsflow.adapters import postgres

    url = await pg.ensure_database(name)
    await postgres.migrate_url(url)
    return url


async def counts(conn: asyncpg.Connection) -> tuple[int, int]:
    row = await conn.fetchrow(f"SELECT ({STORY_COUNT_SQL}) AS a, ({REJECTED_SQL}) AS r")
    return int(row["a"]), int(row["r"])


# --- one run against fresh topic + database ----------------------------------------------------------------------


@dataclass
class Run:
    name: str
    db_url: str
    topic: str
    services: Services
    pipeline_logs: list[Path]
    warm_head: int = 0
    base_articles: int = 0
    base_rejected: int = 0


async def start_run(
    name: str,
    pg: Any,
    bootstrap: str,
    workdir: Path,
    stream: Stream,
    pipelines: int,
    services_known: list[str],
    partitions: int,
    extra_env: dict[str, str] | None = None,
    metrics: bool = False,
) -> Run:
    from newsflow.adapters import kafka

    tag = uuid.uuid4().hex[:6]
    db_url = await fresh_database(pg, f"bench_{name}_{tag}")
    topic = f"bench-{name}-{tag}"
    await kafka.ensure_topics(bootstrap, [(topic, partitions), (f"{topic}.dlq", 1)])
    rundir = workdir / name
    rundir.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items()},
        "NEWSFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "NEWSFLOW_DATABASE_URL": db_url,
        "NEWSFLOW_RAW_TOPIC": topic,
        "NEWSFLOW_DLQ_TOPIC": f"{topic}.dlq",
        "NEWSFLOW_CONSUMER_GROUP": f"bench-{name}-{tag}",
        "NEWSFLOW_RAW_PARTITIONS": str(partitions),
        "NEWSFLOW_LOG_FORMAT": "json",
        "NEWSFLOW_LOG_LEVEL": "warning",
        "NEWSFLOW_STATE_DIR": str(rundir / "state"),
        **(extra_env or {}),
    }
    services = Services(rundir, env, metrics=metrics)
    logs = []
    separate = "clusterer" in services_known
    for i in range(pipelines):
        # info level for the pipeline only: its batch.committed lines carry the per-phase times.
        svc = services.start(
            f"pipeline-{i + 1}" if pipelines > 1 else "pipeline",
            "pipeline" if separate or i > 0 else "all",
            level="info",
        )
        logs.append(svc.log_path)
    if separate:
        services.start("clusterer", "clusterer")
        services.start("projector", "projector")
    elif pipelines > 1:
        pass  # "all" in the first process already runs the readers
    services.start_sampling()
    run = Run(name, db_url, topic, services, logs)
    progress(
        f"{name}: started {', '.join(s.name for s in services.items)} "
        f"(pids {', '.join(str(s.process.pid) for s in services.items)}); topic {topic}"
    )
    await wait_assigned(run, pipelines, partitions)
    await warm_up(run, bootstrap, stream.warmup, partitions)
    return run


async def wait_assigned(run: Run, pipelines: int, partitions: int, timeout_s: float = 120.0) -> None:
    """Until every pipeline process holds partitions and together they hold all of them."""
    deadline = time.monotonic() + timeout_s
    while True:
        run.services.check_alive()
        latest: dict[Path, set[int]] = {}
        for path in run.pipeline_logs:
            held: set[int] = set()
            for e in log_lines(path) if path.exists() else []:
                if e.get("event") == "partitions.assigned":
                    held = {int(p) for p in (e.get("positions") or {})}
                elif e.get("event") == "partitions.revoked":
                    held -= {int(p) for p in e.get("partitions") or []}
            latest[path] = held
        union = set().union(*latest.values()) if latest else set()
        if len(latest) == pipelines and all(latest.values()) and len(union) == partitions:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{run.name}: pipelines did not get all partitions in {timeout_s}s: {latest}")
        await asyncio.sleep(0.3)


async def produce_one(producer: Any, topic: str, m: BenchMessage, partition: int | None = None) -> None:
    await producer.send_and_wait(topic, value=m.value, key=m.key, partition=partition)


async def warm_up(
    run: Run, bootstrap: str, warm: Sequence[BenchMessage], partitions: int, timeout_s: float = 180.0
) -> None:
    """Send the warm-up articles (two per partition) and wait until all have a story: models loaded."""
    from newsflow.adapters import kafka, postgres

    producer = kafka.make_producer(bootstrap, linger_ms=0, max_request_size=16 * 1024 * 1024)
    await producer.start()
    try:
        for i, m in enumerate(warm):
            await produce_one(producer, run.topic, m, partition=i % partitions)
    finally:
        await producer.stop()
    conn = await postgres.connect(run.db_url)
    try:
        deadline = time.monotonic() + timeout_s
        while (await counts(conn))[0] < len(warm):
            run.services.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{run.name}: warm-up articles not through in {timeout_s}s")
            await asyncio.sleep(0.2)
        run.warm_head = int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM newsflow.events"))
        run.base_articles, run.base_rejected = await counts(conn)
    finally:
        await conn.close()
    progress(f"{run.name}: warm-up done ({len(warm)} articles through: models loaded)")


async def throughput_run(run: Run, bootstrap: str, stream: Stream, stall_s: float, label: str) -> dict[str, Any]:
    """Produce the whole stream as fast as possible; until every article has a story."""
    from newsflow.adapters import kafka, postgres

    expect_articles = stream.expected_articles
    expect_rejected = len(stream.messages) - expect_articles
    producer = kafka.make_producer(bootstrap, linger_ms=0, max_request_size=16 * 1024 * 1024)
    await producer.start()
    conn = await postgres.connect(run.db_url)
    produced_at: dict[str, float] = {}
    produce_done: list[float] = []

    async def produce() -> None:
        for m in stream.messages:
            produced_at[m.url] = time.perf_counter()
            await produce_one(producer, run.topic, m)
        produce_done.append(time.perf_counter())

    since = dt.datetime.now(dt.UTC)
    cpu0 = await asyncio.to_thread(run.services.cpu_s)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    task = asyncio.ensure_future(produce())
    last_change, last_seen, t_last = t0, (-1, -1), t0
    articles = rejected = 0
    next_note = t0
    try:
        while True:
            await asyncio.sleep(0.05)
            if task.done() and task.exception():
                raise task.exception()  # type: ignore[misc]
            a, r = await counts(conn)
            articles, rejected = a - run.base_articles, r - run.base_rejected
            now = time.perf_counter()
            if (articles, rejected) != last_seen:
                last_seen, last_change, t_last = (articles, rejected), now, now
            if articles + rejected >= len(stream.messages):  # every message has an outcome
                break
            if now >= next_note:
                run.services.check_alive()
                progress(
                    f"{label}: produced {len(produced_at)}/{len(stream.messages)}, with story "
                    f"{articles}/{expect_articles}, rejected {rejected}/{expect_rejected}, {now - t0:.0f}s"
                )
                next_note = now + 3.0
            if task.done() and now - last_change > stall_s:
                progress(f"{label}: no progress for {stall_s:.0f}s; stopping with {articles}/{expect_articles}")
                break
        await task
        elapsed = t_last - t0
        cpu1 = await asyncio.to_thread(run.services.cpu_s)
        wall = time.perf_counter() - t0
        head = int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM newsflow.events"))
        ev = await conn.fetchrow(
            "SELECT count(*) AS total,"
            f" count(*) FILTER (WHERE {baselines.PIPELINE_STREAM_SQL}) AS pipeline,"
            " count(*) FILTER (WHERE stream_id LIKE 'story-%') AS story"
            " FROM newsflow.events WHERE position > $1",
            run.warm_head,
        )
        reused = await conn.fetchval(
            "SELECT count(*) FROM newsflow.events WHERE position > $1 AND type = 'ArticleEntitiesExtracted'"
            " AND payload->>'reused_from' IS NOT NULL",
            run.warm_head,
        )
        dup_rows = await conn.fetch(
            "SELECT payload->>'kind' AS kind, count(*) AS n FROM newsflow.events WHERE position > $1"
            " AND type = 'ArticleDuplicateDetected' GROUP BY 1",
            run.warm_head,
        )
        stories = await conn.fetchval("SELECT count(*) FROM projection.stories")
        reasons = await conn.fetch(
            "SELECT reason, count(*) AS n FROM projection.rejections WHERE position > $1 GROUP BY 1 ORDER BY 1",
            run.warm_head,
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await conn.close()
        await producer.stop()
    produce_s = (produce_done[0] - t0) if produce_done else None
    batches = batch_stats(run.pipeline_logs, since)
    return {
        "articles_with_story": articles,
        "rejected": rejected,
        "complete": articles + rejected >= len(stream.messages),
        "rejections_by_reason": {r["reason"]: int(r["n"]) for r in reasons},
        "good_articles_rejected": max(0, rejected - expect_rejected),
        "elapsed_s": round(elapsed, 2),
        "throughput_articles_per_s": round(articles / elapsed, 1) if elapsed else None,
        "messages_per_s": round((articles + rejected) / elapsed, 1) if elapsed else None,
        "produce_s": round(produce_s, 2) if produce_s else None,
        "produce_msgs_per_s": round(len(stream.messages) / produce_s, 1) if produce_s else None,
        "events_appended": int(ev["total"]),
        "events_pipeline": int(ev["pipeline"]),
        "events_story": int(ev["story"]),
        "events_per_s": round(int(ev["total"]) / elapsed, 1) if elapsed else None,
        "entities_reused_exact": int(reused or 0),
        "duplicates_detected": {r["kind"]: int(r["n"]) for r in dup_rows},
        "stories": int(stories or 0),
        "head_position": head,
        "batches": batches,
        "cpu_s": {k: round(cpu1[k] - cpu0.get(k, 0.0), 1) for k in cpu1},
        "cpu_cores_busy": {k: round((cpu1[k] - cpu0.get(k, 0.0)) / wall, 2) for k in cpu1} if wall else {},
        "loadavg_1m_before": round(load0, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }


async def latency_run(
    run: Run, bootstrap: str, stream: Stream, rate: float, seconds: float, drain_s: float
) -> dict[str, Any]:
    """Offer the stream at ``rate`` msgs/s for ``seconds``; per URL: produce → visible with a story."""
    from newsflow.adapters import kafka, postgres

    n = max(1, min(len(stream.messages), int(rate * seconds)))
    msgs = stream.messages[:n]
    want = {m.url for m in msgs if m.kind != "bad"}
    producer = kafka.make_producer(bootstrap, linger_ms=0, max_request_size=16 * 1024 * 1024)
    await producer.start()
    conn = await postgres.connect(run.db_url)
    produced_at: dict[str, float] = {}
    produced_wall: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    lag: list[float] = []

    async def produce() -> None:
        start = time.perf_counter()
        for i, m in enumerate(msgs):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag.append(-delay)
            produced_at[m.url] = time.perf_counter()
            produced_wall[m.url] = time.time()
            await produce_one(producer, run.topic, m)

    t0 = time.perf_counter()
    task = asyncio.ensure_future(produce())
    max_pos = rejected = 0
    next_note = t0
    try:
        while True:
            await asyncio.sleep(0.05)
            if task.done() and task.exception():
                raise task.exception()  # type: ignore[misc]
            rows = await conn.fetch(
                "SELECT url, story_position FROM projection.articles WHERE story_id IS NOT NULL"
                " AND story_position > $1",
                max_pos,
            )
            rejected = int(await conn.fetchval(REJECTED_SQL)) - run.base_rejected
            now = time.perf_counter()
            for r in rows:
                max_pos = max(max_pos, int(r["story_position"] or 0))
                if r["url"] in want and r["url"] not in seen_at:
                    seen_at[r["url"]] = now
            if task.done() and len(seen_at) + rejected >= n:  # every message has an outcome
                break
            if task.done() and now - t0 > seconds + drain_s:
                progress(
                    f"latency: {len(want) - len(seen_at)} articles not visible {drain_s:.0f}s after the last produce"
                )
                break
            if now >= next_note:
                run.services.check_alive()
                progress(f"latency: offered {len(produced_at)}/{n} at {rate:.1f}/s, visible {len(seen_at)}")
                next_note = now + 5.0
        await task
        stamps = await conn.fetch(LATENCY_STAMPS_SQL)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await conn.close()
        await producer.stop()
    rejected_good = max(0, rejected - (n - len(want)))
    lat = sorted((seen_at[u] - produced_at[u]) * 1000 for u in seen_at if u in produced_at)
    seen_wall = {u: produced_wall[u] + (seen_at[u] - produced_at[u]) for u in seen_at if u in produced_at}

    def pct(p: float) -> float | None:
        if not lat:
            return None
        return round(lat[min(len(lat) - 1, max(0, round(p / 100 * len(lat) + 0.5) - 1))], 1)

    return {
        "offered_load_articles_per_s": round(rate, 1),
        "messages": n,
        "measured": len(lat),
        "missing": len(want) - len(seen_at) - rejected_good,
        "good_articles_rejected": rejected_good,
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
        "max": round(lat[-1], 1) if lat else None,
        "mean": round(statistics.mean(lat), 1) if lat else None,
        "poll_interval_ms": 50,
        "producer_fell_behind_max_ms": round(max(lag) * 1000, 1) if lag else 0.0,
        "segments_ms": latency_segments(stamps, produced_wall, seen_wall),
        "slowest": [
            {"ms": round((seen_at[m.url] - produced_at[m.url]) * 1000, 1), "kind": m.kind, "words": _words(m)}
            for m in sorted((m for m in msgs if m.url in seen_at), key=lambda m: produced_at[m.url] - seen_at[m.url])[
                :5
            ]
        ],
    }


def _words(m: BenchMessage) -> int:
    return len(str(json.loads(m.value).get("text") or "").split())


# Per article: when the pipeline appended it and when the clusterer decided its story (event insert times).
LATENCY_STAMPS_SQL = """
    SELECT r.payload->'message'->>'url' AS url,
           extract(epoch FROM min(r.recorded_at))::float8 AS appended,
           extract(epoch FROM min(a.recorded_at))::float8 AS decided
    FROM newsflow.events r
    JOIN newsflow.events a ON a.type = 'ArticleAssignedToStory' AND a.payload->>'article_id' = r.payload->>'article_id'
    WHERE r.type = 'ArticleReceived'
    GROUP BY 1
"""


def latency_segments(stamps: Sequence[Any], produced: dict[str, float], seen: dict[str, float]) -> dict[str, Any]:
    """Where the time from produce to story view goes: pipeline (to its append), clusterer, projector.

    Percentiles of each segment over all articles, and the mean segments of the slowest 1 % of articles
    (what the p99 is made of). Event times are insert times inside their transactions, so a few
    milliseconds of each commit count towards the next segment.
    """
    rows = [(r["url"], r["appended"], r["decided"]) for r in stamps if r["url"] in produced and r["url"] in seen]
    if not rows:
        return {}
    parts = {
        url: {
            "pipeline": (appended - produced[url]) * 1000,
            "clusterer": (decided - appended) * 1000,
            "projector": (seen[url] - decided) * 1000,
        }
        for url, appended, decided in rows
    }
    total = sorted(parts, key=lambda u: sum(parts[u].values()))
    slowest = total[-max(1, len(total) // 100) :]

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))], 1)

    return {
        segment: {
            "p50": pct([p[segment] for p in parts.values()], 50),
            "p99": pct([p[segment] for p in parts.values()], 99),
            "mean_in_slowest_1pct": round(statistics.mean(parts[u][segment] for u in slowest), 1),
        }
        for segment in ("pipeline", "clusterer", "projector")
    }


# --- baselines that need the main run's database ---------------------------------------------------------------


async def stage_inputs(db_url: str, after: int) -> list[tuple[str, str]]:
    """(cleaned text, language) of the articles on which the pipeline ran the entity model."""
    from newsflow.adapters import postgres

    conn = await postgres.connect(db_url)
    try:
        rows = await conn.fetch(
            """
            SELECT c.payload->>'text' AS text, e.payload->>'language' AS lang
            FROM newsflow.events e
            JOIN newsflow.events c ON c.stream_id = e.stream_id AND c.type = 'ArticleCleaned'
            WHERE e.type = 'ArticleEntitiesExtracted' AND e.position > $1
              AND e.payload->>'reused_from' IS NULL AND (e.payload->>'supported')::boolean
            ORDER BY e.position
            """,
            after,
        )
    finally:
        await conn.close()
    return [(r["text"], r["lang"]) for r in rows]


async def entity_names_by_url(db_url: str) -> dict[str, tuple[str, ...]]:
    from newsflow.adapters import postgres

    conn = await postgres.connect(db_url)
    try:
        rows = await conn.fetch(
            """
            SELECT r.payload->'message'->>'url' AS url, e.payload->'entities' AS ents
            FROM newsflow.events r JOIN newsflow.events e ON e.stream_id = r.stream_id
            WHERE r.type = 'ArticleReceived' AND e.type = 'ArticleEntitiesExtracted'
            """
        )
    finally:
        await conn.close()
    return {r["url"]: tuple(str(x.get("name")) for x in (r["ents"] or []) if isinstance(x, dict)) for r in rows}


def _in_child(fn: Any, *args: Any) -> Any:
    """Run ``fn`` in one fresh process (spawn): a stage alone, not sharing this process's state."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as ex:
        return ex.submit(fn, *args).result()


# --- py-spy profile of the pipeline ----------------------------------------------------------------------------


def start_profile(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or ("/tmp/pyspy/bin/py-spy" if Path("/tmp/pyspy/bin/py-spy").exists() else None)
    if not exe:
        progress("profile: py-spy not found (pip install --target /tmp/pyspy py-spy); skipped")
        return None
    env = {**os.environ, "PYTHONPATH": str(Path(exe).parent.parent)}
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--format",
            "raw",
            "--rate",
            "50",
            "--duration",
            str(int(seconds)),
            "--nonblocking",
            "-o",
            str(out),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """Collapsed stacks → where samples land: per process and the heaviest frames (self and inclusive)."""
    if not path.exists():
        return {}
    self_n: dict[str, int] = {}
    incl: dict[str, int] = {}
    procs: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n_text = line.rpartition(" ")
        if not stack or not n_text.isdigit():
            continue
        n = int(n_text)
        frames = stack.split(";")
        total += n
        owner = next((f for f in reversed(frames) if f.startswith("process ")), frames[0])
        procs[owner[:100]] = procs.get(owner[:100], 0) + n
        for f in set(frames[1:]):
            incl[f] = incl.get(f, 0) + n
        self_n[frames[-1]] = self_n.get(frames[-1], 0) + n

    def topk(d: dict[str, int]) -> list[list[Any]]:
        return [[k[:160], round(v / total, 3)] for k, v in sorted(d.items(), key=lambda x: -x[1])[:top]]

    return {"samples": total, "by_process": topk(procs), "self": topk(self_n), "inclusive": topk(incl)}


# --- main --------------------------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from newsflow.adapters.embedded import EmbeddedBroker, EmbeddedPostgres

    started = time.perf_counter()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    progress(f"building the stream: {args.articles} messages, seed {args.seed}")
    stream = build_stream(args.articles, seed=args.seed, bad_share=args.bad_share, warmup=2 * args.partitions)
    desc = stream.describe()
    if stream.corpus.fallback:
        progress(f"NOTE: {stream.corpus.note} — the stream is built from the five seeds only")
    progress(
        f"stream: {desc['originals']} originals, {desc['duplicates_exact']} exact and "
        f"{desc['duplicates_near']} near duplicates, {desc['bad_messages']} bad; "
        f"{desc['corpus_texts']} corpus texts ({desc['corpus_note']})"
    )
    if desc["recycled_as_exact"]:
        progress(f"NOTE: {desc['recycled_as_exact']} originals asked beyond the corpus were sent as exact copies")
    services_known = service_names()
    if "clusterer" not in services_known:
        progress("NOTE: `newsflow run` has no clusterer service; running `newsflow run all` for the readers")

    workdir = Path(tempfile.mkdtemp(prefix="newsflow-bench-"))
    pg = EmbeddedPostgres(workdir / "pgdata", delete_on_stop=True)
    broker = EmbeddedBroker(log_path=workdir / "broker.log")
    runs: list[Run] = []
    summary: dict[str, Any] = {}
    try:
        progress(f"starting PostgreSQL and the broker under {workdir}")
        await asyncio.to_thread(pg.start)
        broker.start()
        infra = {"broker": TreeMemory("broker", broker.process.pid if broker.process else -1)}
        pg_pid = pg._server.get_pid() if pg._server is not None else None  # type: ignore[attr-defined]
        if pg_pid:
            infra["postgres"] = TreeMemory("postgres", pg_pid)

        def sample_infra() -> None:
            table = _proc_table()
            for m in infra.values():
                m.sample(table)

        # 1. throughput, one pipeline process
        main = await start_run("main", pg, broker.bootstrap, workdir, stream, 1, services_known, args.partitions)
        runs.append(main)
        profiler = None
        if args.profile:
            profiler = start_profile(
                main.services.items[0].process.pid, workdir / "pipeline.pyspy", args.profile_seconds
            )
        infra_task = asyncio.ensure_future(_repeat(sample_infra, 1.0))
        tp = await throughput_run(main, broker.bootstrap, stream, args.stall_seconds, "throughput")
        infra_task.cancel()
        sample_infra()
        progress(
            f"throughput: {tp['throughput_articles_per_s']} articles/s end to end "
            f"({tp['articles_with_story']} articles in {tp['elapsed_s']}s)"
        )
        if profiler is not None:
            try:
                profiler.wait(args.profile_seconds + 30)
            except subprocess.TimeoutExpired:
                profiler.kill()
        await main.services.stop()
        memory = main.services.memory()

        # 2. baselines on the same data, nothing else running
        progress("baseline: raw aiokafka consume of the same topic")
        kc = await baselines.kafka_consume(broker.bootstrap, main.topic)
        progress(f"baseline: kafka {kc['kafka_consume_msgs_per_s']} msgs/s; raw asyncpg append of the same events")
        from newsflow.adapters import postgres

        conn = await postgres.connect(main.db_url)
        try:
            events = await baselines.pipeline_events(conn, main.warm_head)
        finally:
            await conn.close()
        append_url = await fresh_database(pg, f"bench_append_{uuid.uuid4().hex[:6]}")
        pa = await baselines.pg_append(append_url, events, tp["batches"]["events_per_batch"])
        progress(f"baseline: append {pa['pg_append_events_per_s']} events/s; stages alone (one process)")
        cleaned = await stage_inputs(main.db_url, main.warm_head)
        raw = [m.value for m in stream.messages if m.kind != "bad"]
        stages = await asyncio.to_thread(
            _in_child, baselines.stages_alone, raw, cleaned, args.stage_seconds, args.other_stage_seconds
        )
        slow_name = min(stages, key=lambda k: stages[k]["articles_per_s"]) if stages else None
        slow_rate = stages[slow_name]["articles_per_s"] if slow_name else None
        progress(f"baseline: slowest stage alone {slow_name} {slow_rate} articles/s")

        # 3. latency at half the measured throughput
        latency: dict[str, Any] = {"p50": None, "p95": None, "p99": None}
        offered = None
        if not args.skip_latency and tp["throughput_articles_per_s"]:
            offered = args.rate or tp["throughput_articles_per_s"] / 2
            lat_run = await start_run(
                "latency", pg, broker.bootstrap, workdir, stream, 1, services_known, args.partitions
            )
            runs.append(lat_run)
            latency = await latency_run(
                lat_run, broker.bootstrap, stream, offered, args.latency_seconds, args.stall_seconds
            )
            await lat_run.services.stop()
            progress(
                f"latency at {offered:.1f} articles/s: p50 {latency['p50']} ms, p95 {latency['p95']} ms, "
                f"p99 {latency['p99']} ms"
            )

        # 4. scaling the Kafka way: 1 vs 2 pipeline processes in one group, each bounded to one stage
        #    worker, so that one process does not already use every core (the main run uses two workers).
        scaling = None
        scale_detail: dict[str, Any] | None = None
        run_scaling = args.scaling == "on"
        if args.scaling == "auto":
            spent = time.perf_counter() - started
            need = 2 * (tp["elapsed_s"] + 40) + (args.cluster_large * 0.008 + 15 if args.cluster_large else 0)
            run_scaling = spent + need < args.budget_seconds
            progress(
                f"scaling runs {'fit' if run_scaling else 'do not fit'} the {args.budget_seconds:.0f}s budget "
                f"({spent:.0f}s spent, ~{need:.0f}s more needed){'' if run_scaling else ': skipped (--scaling on forces them)'}"
            )
        if run_scaling:
            one_worker = {"NEWSFLOW_STAGE_WORKERS": "1"}
            rates: dict[int, dict[str, Any]] = {}
            for pipelines in (1, 2):
                sc_run = await start_run(
                    f"scale{pipelines}",
                    pg,
                    broker.bootstrap,
                    workdir,
                    stream,
                    pipelines,
                    services_known,
                    args.partitions,
                    one_worker,
                )
                runs.append(sc_run)
                rates[pipelines] = await throughput_run(
                    sc_run,
                    broker.bootstrap,
                    stream,
                    args.stall_seconds,
                    f"scaling ({pipelines} pipeline process(es), 1 stage worker each)",
                )
                await sc_run.services.stop()
                rates[pipelines]["memory"] = sc_run.services.memory()
            one, two = rates[1]["throughput_articles_per_s"], rates[2]["throughput_articles_per_s"]
            if one and two:
                scaling = round(two / one, 2)
            scale_detail = {**rates[2], "one_process_articles_per_s": one, "stage_workers_per_process": 1}
            progress(
                f"scaling: {one} articles/s with 1 pipeline process, {two} with 2 (×{scaling}), one stage worker each"
            )

        # 6 (here, while the machine is as it was for the main run). Metrics on vs off, same stream.
        metrics_cost = None
        if args.metrics_cost:
            metrics_cost = await metrics_cost_runs(args, pg, broker.bootstrap, workdir, stream, services_known, runs)

        # 5. clustering cost growth (pure, in a fresh process)
        cost = None
        if args.cluster_large > 0:
            ents = await entity_names_by_url(main.db_url)
            texts = []
            for m in stream.messages:
                if m.kind == "original":
                    msg = json.loads(m.value)
                    texts.append((msg.get("title"), msg["text"], ents.get(m.url, ())))
            sizes = [args.cluster_small, args.cluster_large]
            progress(
                f"clustering cost growth: pre-filling {sizes[0]:,} and {sizes[1]:,} articles "
                f"(recycling {len(texts)} texts)"
            )
            cost = await asyncio.to_thread(
                _in_child, baselines.clustering_cost_growth, texts, sizes, args.cluster_probe, args.cluster_per_day
            )
            progress(
                f"clustering: {cost['ms_per_article_small']} ms at {sizes[0]:,} vs "
                f"{cost['ms_per_article_large']} ms at {sizes[1]:,} (×{cost['ratio_large_over_small']})"
            )

        throughput = tp["throughput_articles_per_s"]
        services_rss = {k: v["peak_rss_mb"] for k, v in memory.items()}
        entity_share = (len(cleaned) / tp["articles_with_story"]) if tp["articles_with_story"] else None
        summary = {
            "throughput_articles_per_s": throughput,
            "latency_ms": {"p50": latency.get("p50"), "p95": latency.get("p95"), "p99": latency.get("p99")},
            "offered_load_articles_per_s": round(offered, 1) if offered else None,
            "slowest_stage": {"name": slow_name, "articles_per_s": slow_rate},
            "baselines": {
                "kafka_consume_msgs_per_s": kc["kafka_consume_msgs_per_s"],
                "pg_append_events_per_s": pa["pg_append_events_per_s"],
                "slowest_stage_alone_articles_per_s": slow_rate,
                "stages_alone_articles_per_s": {k: v["articles_per_s"] for k, v in stages.items()},
                "kafka": kc,
                "pg_append": pa,
                "stages_alone": stages,
            },
            "peak_rss_mb_total": round(sum(services_rss.values()), 1),
            "peak_rss_mb": services_rss,
            "memory": memory,
            "peak_rss_mb_infra": {k: m.report()["peak_rss_mb"] for k, m in infra.items()},
            "scaling_2_over_1": scaling,
            "articles": desc["articles"],
            "duplicates_exact": desc["duplicates_exact"],
            "duplicates_near": desc["duplicates_near"],
            "bad_messages": desc["bad_messages"],
            "events_per_s": tp["events_per_s"],
            "stage_ms_per_article": tp["batches"]["ms_per_article"],
            "stage_time_share": tp["batches"]["share"],
            "ratios": {
                "throughput_over_slowest_stage_alone": round(throughput / slow_rate, 2)
                if throughput and slow_rate
                else None,
                "share_of_articles_running_entities": round(entity_share, 3) if entity_share else None,
                "slowest_stage_bound_for_this_stream_per_worker": (
                    round(slow_rate / entity_share, 1) if slow_rate and entity_share else None
                ),
                "throughput_over_kafka_consume": round(throughput / kc["kafka_consume_msgs_per_s"], 4)
                if throughput and kc["kafka_consume_msgs_per_s"]
                else None,
                "events_per_s_over_pg_append": round(tp["events_per_s"] / pa["pg_append_events_per_s"], 3)
                if tp["events_per_s"] and pa["pg_append_events_per_s"]
                else None,
            },
            "clustering_cost_growth": cost,
            "metrics_cost": metrics_cost,
            "throughput_run": {k: v for k, v in tp.items() if k != "batches"}
            | {"batches": {k: v for k, v in tp["batches"].items() if k != "events_per_batch"}},
            "latency_run": latency,
            "scaling_run": (
                {k: v for k, v in scale_detail.items() if k != "batches"}
                | {"batches": {k: v for k, v in scale_detail["batches"].items() if k != "events_per_batch"}}
            )
            if scale_detail
            else None,
            "stream": desc,
            "settings": {
                "pipeline_processes": 1,
                "partitions": args.partitions,
                "services": services_known,
                "env_overrides": {k: v for k, v in os.environ.items() if k.startswith("NEWSFLOW_")},
                "stage_workers": int(os.environ.get("NEWSFLOW_STAGE_WORKERS", "2")),
            },
            "machine": {
                "cores": os.cpu_count(),
                "loadavg_at_start": load_at_start,
                "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpu": _cpu_model(),
                "memory_gb": _mem_gb(),
            },
            "duration_s": None,
            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        if args.profile:
            summary["profile"] = summarize_profile(workdir / "pipeline.pyspy")
    finally:
        for r in runs:
            await r.services.stop()
        broker.stop()
        await asyncio.to_thread(pg.stop)
        if args.keep_workdir:
            progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    summary["duration_s"] = round(time.perf_counter() - started, 1)
    return summary


async def metrics_cost_runs(
    args: argparse.Namespace,
    pg: Any,
    bootstrap: str,
    workdir: Path,
    stream: Stream,
    services_known: list[str],
    runs: list[Run],
) -> dict[str, Any]:
    """Throughput with the metrics endpoint off and on, ``args.metrics_cost`` rounds, alternating which goes first."""
    rates: dict[str, list[float]] = {"off": [], "on": []}
    cpu_ms: dict[str, list[float]] = {"off": [], "on": []}  # newsflow processes' CPU per article: less noisy
    scrape_s: list[float] = []
    for round_ in range(args.metrics_cost):
        for mode in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
            name = f"metrics-{mode}-{round_ + 1}"
            run = await start_run(
                name, pg, bootstrap, workdir, stream, 1, services_known, args.partitions, metrics=mode == "on"
            )
            runs.append(run)
            scraping = None
            if run.services.metrics_ports:
                scraping = asyncio.ensure_future(scrape_loop(run.services.metrics_ports, scrape_s))
            try:
                tp = await throughput_run(run, bootstrap, stream, args.stall_seconds, f"metrics {mode}")
            finally:
                if scraping is not None:
                    scraping.cancel()
            await run.services.stop()
            rates[mode].append(tp["throughput_articles_per_s"])
            cpu_ms[mode].append(round(1000 * sum(tp["cpu_s"].values()) / max(1, len(stream.messages)), 2))
            progress(
                f"metrics {mode}, round {round_ + 1}: {tp['throughput_articles_per_s']} articles/s,"
                f" {cpu_ms[mode][-1]} CPU ms per article"
            )
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    cost = round(100 * (off - on) / off, 1) if off else None
    cpu_off, cpu_on = statistics.median(cpu_ms["off"]), statistics.median(cpu_ms["on"])
    cpu_cost = round(100 * (cpu_on - cpu_off) / cpu_off, 1) if cpu_off else None
    progress(f"metrics cost: {off} articles/s off, {on} on (median of {args.metrics_cost}): {cost} %")
    progress(f"metrics cost in CPU: {cpu_off} ms per article off, {cpu_on} on: {cpu_cost} %")
    return {
        "rounds": args.metrics_cost,
        "off_articles_per_s": rates["off"],
        "on_articles_per_s": rates["on"],
        "cost_pct_of_median": cost,
        "cpu_ms_per_article_off": cpu_ms["off"],
        "cpu_ms_per_article_on": cpu_ms["on"],
        "cpu_cost_pct_of_median": cpu_cost,
        "scrape_every_s": SCRAPE_EVERY_S,
        "scrapes": len(scrape_s),
        "scrape_ms_p50": round(1000 * statistics.median(scrape_s), 1) if scrape_s else None,
    }


async def _repeat(fn: Any, every_s: float) -> None:
    while True:
        await asyncio.to_thread(fn)
        await asyncio.sleep(every_s)


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_bench", description=__doc__.split("\n")[0])
    p.add_argument("--articles", type=int, default=1300, help="messages in the stream (default 1300)")
    p.add_argument("--seed", type=int, default=1, help="stream seed (same seed, same stream)")
    p.add_argument("--bad-share", type=float, default=0.01, help="share of bad messages (default 0.01)")
    p.add_argument("--partitions", type=int, default=4, help="raw topic partitions (default 4)")
    p.add_argument("--skip-latency", action="store_true", help="skip the paced latency run")
    p.add_argument("--latency-seconds", type=float, default=40.0, help="how long the paced run offers load")
    p.add_argument("--rate", type=float, help="offered load for the latency run (default: half the throughput)")
    p.add_argument(
        "--scaling",
        nargs="?",
        const="on",
        default="auto",
        choices=["auto", "on", "off"],
        help="also run with 2 pipeline processes (auto: only if it fits --budget-seconds)",
    )
    p.add_argument("--no-scaling", dest="scaling", action="store_const", const="off")
    p.add_argument(
        "--budget-seconds",
        type=float,
        default=540.0,
        help="time budget the auto scaling decision keeps to (default 540)",
    )
    p.add_argument("--stage-seconds", type=float, default=15.0, help="entities-alone measuring time")
    p.add_argument("--other-stage-seconds", type=float, default=2.0, help="clean/language/dedup-alone time")
    p.add_argument("--cluster-small", type=int, default=1000)
    p.add_argument(
        "--cluster-large",
        type=int,
        default=10_000,
        help="articles pre-filled for the cost-growth figure (0: skip; 100000 takes a long time)",
    )
    p.add_argument("--cluster-probe", type=int, default=300, help="articles timed after each pre-fill")
    p.add_argument(
        "--cluster-per-day",
        type=float,
        default=50.0,
        help="articles per day in the pre-fill (stories go idle and are evicted after 365 days)",
    )
    p.add_argument("--stall-seconds", type=float, default=60.0, help="give up after this long without progress")
    p.add_argument(
        "--metrics-cost",
        type=int,
        default=0,
        metavar="N",
        help="N rounds of throughput with the metrics endpoint off and on (scraped), same stream (default 0: skip)",
    )
    p.add_argument("--profile", action="store_true", help="py-spy record the pipeline process tree")
    p.add_argument("--profile-seconds", type=float, default=30.0)
    p.add_argument(
        "--seconds",
        type=float,
        dest="latency_seconds_alias",
        help="same as --latency-seconds: how long the paced run offers load",
    )
    p.add_argument("--out-dir", type=Path, default=Path(".newsflow/bench"))
    p.add_argument("--keep-workdir", action="store_true", help="keep the temp dir (service logs)")
    args = p.parse_args(argv)
    if args.latency_seconds_alias:
        args.latency_seconds = args.latency_seconds_alias
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    from newsflow.logs import configure_logging

    configure_logging("console" if sys.stderr.isatty() else "json", "warning")
    try:
        summary = asyncio.run(bench(args))
    except KeyboardInterrupt:
        progress("interrupted; every process started here was stopped")
        sys.exit(130)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(summary, ensure_ascii=False)
    (args.out_dir / f"summary-{stamp}.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    (args.out_dir / "bench-latest.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    progress(f"summary written to {args.out_dir / f'summary-{stamp}.json'} and {args.out_dir / 'bench-latest.json'}")
    print(text, flush=True)


if __name__ == "__main__":
    main()
