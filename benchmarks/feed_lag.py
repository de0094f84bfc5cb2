"""The story feed's lag behind the log at half load: real broker, pipeline, clusterer, projector and feed processes.

    python -m benchmarks.feed_lag [--articles 400] [--rate R] [--seconds 40] [--seed 1] [--partitions 4]

Builds the benchmark stream (``benchmarks.stream``), runs ``newsflow run pipeline``,
``clusterer``, ``projector`` and ``feed`` as separate processes against a private
PostgreSQL and a tansu broker, offers the stream at ``--rate`` articles/s (default:
half the throughput measured first on the same stream, in a run of its own, as
``make bench`` does), and reads ``newsflow.stories`` with a plain consumer. A
record's lag is the time it reached the consumer minus the time its event was
recorded in the log (``logged_at``; same machine, same clock): the clusterer's
decision → projector → feed → broker → consumer. Reported per record kind and over
the decisions, p50 / p95 / p99 / max in ms, with the article latency of the same run
(produce → visible with a story) beside it.

The LAST stdout line is the JSON summary. Every process started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.pipeline_bench import Run, latency_run, progress, start_run, throughput_run
from benchmarks.stream import Stream, build_stream

SERVICES = ["pipeline", "clusterer", "projector"]


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    ordered = sorted(values)

    def at(q: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))], 1)

    return {
        "n": len(ordered),
        "p50": at(50),
        "p95": at(95),
        "p99": at(99),
        "max": round(ordered[-1], 1) if ordered else None,
    }


class FeedWatch:
    """A plain consumer of the feed topic from its beginning: per record, arrival time minus ``logged_at``."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.lag_ms: dict[str, list[float]] = {}
        self.last_position = 0
        self._seen: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self.after_position = 0  # records of the warm-up are left out
        self._moved = asyncio.Event()

    async def _run(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=1000,
            fetch_max_wait_ms=50,  # the wait for a fetch to fill would count as lag
        )
        await consumer.start()
        try:
            while True:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    now = time.time()
                    for m in batch:
                        r = json.loads(m.value or b"{}")
                        if r["record_id"] in self._seen:
                            continue
                        self._seen.add(r["record_id"])
                        self.last_position = max(self.last_position, int(r["position"]))
                        self._moved.set()
                        if int(r["position"]) <= self.after_position:
                            continue
                        logged = datetime.fromisoformat(r["logged_at"].replace("Z", "+00:00")).timestamp()
                        self.lag_ms.setdefault(r["kind"], []).append((now - logged) * 1000)
        finally:
            await consumer.stop()

    async def reached(self, position: int, timeout_s: float) -> bool:
        """Whether the feed brought a record of ``position`` or later within ``timeout_s``."""

        async def wait() -> None:
            while self.last_position < position:
                self._moved.clear()
                await self._moved.wait()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wait(), timeout_s)
        return self.last_position >= position

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def report(self) -> dict[str, Any]:
        decisions = [
            v for kind in ("story_started", "article_assigned", "stories_merged") for v in self.lag_ms.get(kind, [])
        ]
        return {
            "decisions_ms": percentiles(decisions),
            "by_kind_ms": {kind: percentiles(values) for kind, values in sorted(self.lag_ms.items())},
        }


async def _decision_head(db_url: str) -> int:
    from newsflow.adapters import postgres

    conn = await postgres.connect(db_url)
    try:
        return int(
            await conn.fetchval("SELECT coalesce(max(position), 0) FROM newsflow.events WHERE stream_id LIKE 'story-%'")
        )
    finally:
        await conn.close()


async def measured_rate(args: argparse.Namespace, pg: Any, bootstrap: str, workdir: Path, stream: Stream) -> float:
    """Half the end-to-end throughput on this stream, measured in a run of its own (no feed)."""
    run = await start_run("throughput", pg, bootstrap, workdir, stream, 1, SERVICES, args.partitions)
    try:
        tp = await throughput_run(run, bootstrap, stream, args.stall_seconds, "throughput")
    finally:
        await run.services.stop()
    rate = float(tp["throughput_articles_per_s"] or 1.0) / 2
    progress(f"throughput {tp['throughput_articles_per_s']} articles/s: offering half, {rate:.1f}/s")
    return rate


async def feed_run(
    args: argparse.Namespace, pg: Any, bootstrap: str, workdir: Path, stream: Stream, rate: float
) -> dict[str, Any]:
    topic = f"bench-stories-{uuid.uuid4().hex[:6]}"
    run: Run = await start_run(
        "feed", pg, bootstrap, workdir, stream, 1, SERVICES, args.partitions, {"NEWSFLOW_STORIES_TOPIC": topic}
    )
    watch = FeedWatch(bootstrap, topic)
    try:
        watch.after_position = await _decision_head(run.db_url)  # the warm-up's decisions
        run.services.start("feed", "feed")
        watch.start()
        if not await watch.reached(watch.after_position, args.stall_seconds):  # the feed is up before the load
            raise RuntimeError("the feed published nothing of the warm-up")
        latency = await latency_run(run, bootstrap, stream, rate, args.seconds, args.stall_seconds)
        drained = await watch.reached(await _decision_head(run.db_url), args.stall_seconds)
    finally:
        await watch.stop()
        await run.services.stop()
    return {
        "offered_articles_per_s": round(rate, 1),
        "feed_drained": drained,
        "feed_lag": watch.report(),
        "article_latency_ms": {k: latency.get(k) for k in ("p50", "p95", "p99", "max", "measured", "missing")},
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from newsflow.adapters.embedded import EmbeddedBroker, EmbeddedPostgres

    stream = build_stream(args.articles, seed=args.seed, warmup=2 * args.partitions)
    workdir = Path(tempfile.mkdtemp(prefix="newsflow-feed-lag-"))
    pg = EmbeddedPostgres(workdir / "pgdata", delete_on_stop=True)
    broker = EmbeddedBroker(log_path=workdir / "broker.log")
    try:
        progress(f"{len(stream.messages)} messages; PostgreSQL and the broker under {workdir}")
        await asyncio.to_thread(pg.start)
        broker.start()
        rate = args.rate or await measured_rate(args, pg, broker.bootstrap, workdir, stream)
        summary = await feed_run(args, pg, broker.bootstrap, workdir, stream, rate)
        summary["messages"] = len(stream.messages)
        summary["corpus_fallback_to_seeds"] = stream.corpus.fallback
        return summary
    finally:
        broker.stop()
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(workdir, ignore_errors=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.feed_lag", description=__doc__.split("\n")[0])
    p.add_argument("--articles", type=int, default=400, help="messages in the stream (default 400)")
    p.add_argument("--rate", type=float, help="offered articles/s (default: half the throughput, measured first)")
    p.add_argument("--seconds", type=float, default=40.0, help="how long the load is offered (default 40)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--stall-seconds", type=float, default=60.0, help="give up after this long without progress")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    from newsflow.logs import configure_logging

    args = parse_args(argv)
    configure_logging("console" if sys.stderr.isatty() else "json", "warning")
    with contextlib.suppress(KeyboardInterrupt):
        print(json.dumps(asyncio.run(bench(args))))


if __name__ == "__main__":
    main()
