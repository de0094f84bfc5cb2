"""Baselines measured next to the end-to-end run, on the same data.

- ``kafka_consume``: a plain aiokafka consumer (no group, no processing) reading the
  benchmark topic from the beginning: the broker and client's ceiling.
- ``pg_append``: the events the pipeline wrote, appended again into a fresh
  database with ``newsflow.adapters.postgres.append`` (under its append lock, one
  transaction per batch) in batches of the sizes the pipeline committed: the
  event store's ceiling without dedup look-ups, offsets or processing.
- ``stages_alone``: each stage on the stream's own texts in one process (entities,
  the slowest, on the cleaned texts the pipeline produced).
- ``clustering_cost_growth``: time for ``OnlineClusterer.add`` with 1,000 vs a
  large number of articles already clustered (recycled real texts, see
  ``_cluster_inputs``).

Each function returns plain JSON-able dicts; ``pipeline_bench`` calls them.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import re
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks.stages import measure
from newsflow.adapters import postgres
from newsflow.domain.events import NewEvent

_NEW_EVENT_FIELDS = ("stream_id", "type", "schema_version", "payload", "metadata", "event_id")
PIPELINE_STREAM_SQL = "(stream_id LIKE 'article-%' OR stream_id LIKE 'rejection-%')"


# --- Kafka -------------------------------------------------------------------------------------------


async def kafka_consume(
    bootstrap: str, topic: str, expect: int | None = None, timeout_s: float = 120.0
) -> dict[str, Any]:
    """Read every record of ``topic`` once with a bare consumer; records/s and MB/s."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or [])
        if not parts:
            await consumer.force_metadata_update()
            parts = sorted(consumer.partitions_for_topic(topic) or [])
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        total = sum(ends[tp] - starts[tp] for tp in tps)
        if expect is not None:
            total = min(total, expect) if total else expect
        await consumer.seek_to_beginning(*tps)
        got = nbytes = 0
        start = time.perf_counter()
        deadline = start + timeout_s
        while got < total and time.perf_counter() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            for records in batch.values():
                got += len(records)
                nbytes += sum(len(r.value or b"") for r in records)
        elapsed = time.perf_counter() - start
    finally:
        await consumer.stop()
    return {
        "kafka_consume_msgs_per_s": round(got / elapsed, 1) if elapsed else None,
        "kafka_consume_mb_per_s": round(nbytes / elapsed / 1e6, 2) if elapsed else None,
        "kafka_consume_records": got,
        "kafka_consume_s": round(elapsed, 3),
        "kafka_partitions": len(parts),
    }


# --- PostgreSQL ----------------------------------------------------------------------------------------


async def pipeline_events(conn: asyncpg.Connection, after_position: int) -> list[NewEvent]:
    """The events the pipeline appended after ``after_position`` (not the clusterer's story events)."""
    rows = await conn.fetch(
        "SELECT event_id, stream_id, type, schema_version, payload, metadata FROM newsflow.events"
        f" WHERE position > $1 AND {PIPELINE_STREAM_SQL} ORDER BY position",
        after_position,
    )
    return [NewEvent(**{field: r[field] for field in _NEW_EVENT_FIELDS}) for r in rows]


def batch_sizes_like(total: int, sizes: Sequence[int], fallback: int = 3000) -> list[int]:
    """Cut ``total`` events into the batch sizes the pipeline committed (cycled), or ``fallback``."""
    sizes = [s for s in sizes if s > 0] or [fallback]
    out, i = [], 0
    while sum(out) < total:
        out.append(min(sizes[i % len(sizes)], total - sum(out)))
        i += 1
    return out


async def pg_append(url: str, events: Sequence[NewEvent], sizes: Sequence[int]) -> dict[str, Any]:
    """Append ``events`` into the (fresh, migrated) database at ``url`` in batches of ``sizes``."""
    conn = await postgres.connect(url)
    try:
        plan = batch_sizes_like(len(events), sizes)
        i = 0
        start = time.perf_counter()
        for n in plan:
            async with conn.transaction():
                await postgres.append(conn, events[i : i + n])
            i += n
        elapsed = time.perf_counter() - start
        stored = await conn.fetchval("SELECT count(*) FROM newsflow.events")
        nbytes = await conn.fetchval("SELECT pg_total_relation_size('newsflow.events')")
    finally:
        await conn.close()
    return {
        "pg_append_events_per_s": round(len(events) / elapsed, 1) if elapsed else None,
        "pg_append_events": len(events),
        "pg_append_batches": len(plan),
        "pg_append_mean_events_per_batch": round(statistics.mean(plan), 1) if plan else 0,
        "pg_append_s": round(elapsed, 3),
        "pg_append_stored": int(stored),
        "pg_events_table_mb": round(nbytes / 2**20, 1),
    }


# --- Stages alone ------------------------------------------------------------------------------------------


def stages_alone(
    raw_messages: Sequence[bytes], cleaned: Sequence[tuple[str, str]], entity_seconds: float, other_seconds: float
) -> dict[str, Any]:
    """Each stage alone in this process: clean/language/dedup briefly, entities (spaCy) longest.

    ``raw_messages`` are stream messages (bytes); ``cleaned`` the (text, language) pairs the
    pipeline produced for the articles on which it ran the entity model.
    """
    from newsflow.domain import dedup, entities, language
    from newsflow.domain.cleaning.cleaner import clean_article
    from newsflow.domain.contract import RawArticleV1, decode_raw_message

    msgs = [m for m in (decode_raw_message(v) for v in raw_messages) if isinstance(m, RawArticleV1)]
    texts = [t for t, _ in cleaned]
    en = [(t, lang) for t, lang in cleaned if lang in entities.SUPPORTED_LANGUAGES] or [(t, "en") for t in texts]
    out: dict[str, Any] = {}
    if msgs and other_seconds > 0:
        out["clean"] = measure(clean_article, msgs, other_seconds, warm=2)
    if texts and other_seconds > 0:
        out["language"] = measure(language.detect, texts, other_seconds, warm=2)
        out["dedup"] = measure(dedup.dedup_key, texts, other_seconds, warm=2)
    if en:
        out["entities"] = measure(lambda p: entities.extract(p[0], p[1]), en, entity_seconds, warm=2)
        out["entities"]["mean_words"] = round(statistics.mean(len(t.split()) for t, _ in en))
    return out


# --- Clustering cost growth ------------------------------------------------------------------------------

_CAP = re.compile(r"\b([A-Z][a-z]+)\b")


def _tag(g: int) -> str:
    """A letters-only tag per generation (tokens must stay tokens: ``[^\\W\\d_][\\w'’-]+``)."""
    letters = "bcdfghjklmnpqrstvwxz"
    s = ""
    g += 1
    while g:
        g, r = divmod(g, len(letters))
        s += letters[r]
    return "q" + s


def _cluster_inputs(
    texts: Sequence[tuple[str | None, str, tuple[str, ...]]],
    start: int,
    count: int,
    start_time: dt.datetime,
    per_day: float,
    tag: str | None = None,
) -> list[Any]:
    """Articles ``start``..``start+count`` of an endless recycled stream.

    Generation ``g = i // len(texts)`` reuses text ``i % len(texts)`` with its capitalised
    words and entity names tagged per generation (``Putin`` → ``Putinqc``): each generation
    brings new names, as new stories do, instead of piling onto the first generation's
    stories. Times advance ``1/per_day`` days per article, so over a large pre-fill stories
    go idle and are evicted (``window_days``, ``max_stories``). ``tag`` forces one tag for
    all (the probe articles, identical for both sizes).
    """
    from newsflow.domain.clustering import ArticleInput

    out = []
    n = len(texts)
    for i in range(start, start + count):
        title, text, ents = texts[i % n]
        g = i // n
        t = tag if tag is not None else (_tag(g) if g else "")
        if t:

            def sub(m: re.Match[str], t: str = t) -> str:
                return m.group(1) + t

            title = _CAP.sub(sub, title) if title else title
            text = _CAP.sub(sub, text)
            ents = tuple(e + t for e in ents)
        at = start_time + dt.timedelta(days=i / per_day)
        out.append(ArticleInput(f"bench-{i}" if tag is None else f"probe-{tag}-{i}", title, text, ents, at, "en"))
    return out


def clustering_cost_growth(
    texts: Sequence[tuple[str | None, str, tuple[str, ...]]],
    sizes: Sequence[int],
    probe: int = 300,
    per_day: float = 150.0,
    progress: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """ms per ``add`` for ``probe`` new articles after pre-filling ``sizes[i]`` articles, for each size.

    The probe articles are the same texts for every size (tagged as an unseen generation),
    timed right after the pre-fill with times just after it.
    """
    from newsflow.domain.clustering import OnlineClusterer

    epoch = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    results: dict[str, Any] = {}
    for size in sizes:
        c = OnlineClusterer()
        t0 = time.perf_counter()
        chunk = 2000
        for s in range(0, size, chunk):
            for a in _cluster_inputs(texts, s, min(chunk, size - s), epoch, per_day):
                c.add(a)
            if (s // chunk) % 10 == 9:
                progress(f"clustering pre-fill {s + chunk:,}/{size:,}")
        prefill_s = time.perf_counter() - t0
        probes = _cluster_inputs(texts, size, probe, epoch, per_day, tag="qprobe")
        gc.collect()
        times = []
        for a in probes:
            t = time.perf_counter()
            c.add(a)
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        results[str(size)] = {
            "prefill_articles": size,
            "prefill_s": round(prefill_s, 1),
            "live_stories": len(c.stories),
            "index_terms": len(c._index),
            "df_terms": len(c.df),
            "ms_per_article": round(statistics.mean(times), 3),
            "p50_ms": round(times[len(times) // 2], 3),
            "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 3),
            "span_days": round(size / per_day, 1),
        }
        progress(f"clustering: {size:,} stored → {results[str(size)]['ms_per_article']} ms/article")
        del c
        gc.collect()
    small, large = str(min(sizes)), str(max(sizes))
    return {
        "sizes": list(sizes),
        "probe_articles": probe,
        "articles_per_day": per_day,
        "by_size": results,
        "ms_per_article_small": results[small]["ms_per_article"],
        "ms_per_article_large": results[large]["ms_per_article"],
        "ratio_large_over_small": round(results[large]["ms_per_article"] / results[small]["ms_per_article"], 2),
    }


def main() -> None:
    """Run the clustering cost-growth baseline alone (no broker or database needed)."""
    import argparse
    import sys

    from benchmarks.stream import load_corpus

    p = argparse.ArgumentParser(description="clustering cost growth alone")
    p.add_argument("--small", type=int, default=1000)
    p.add_argument("--large", type=int, default=100_000)
    p.add_argument("--probe", type=int, default=300)
    args = p.parse_args()
    corpus = load_corpus()
    texts = [(t.title, t.text, ()) for t in corpus.texts]
    result = clustering_cost_growth(
        texts, [args.small, args.large], args.probe, progress=lambda s: print(s, file=sys.stderr, flush=True)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
