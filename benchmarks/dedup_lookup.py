"""How the near-duplicate lookup cost grows with the number of stored articles.

    python -m benchmarks.dedup_lookup [--small 2000] [--large 200000] [--lookups 200]

Starts a private PostgreSQL, stores random ~600-word texts' dedup keys (COPY, as
the pipeline would have registered them), then times ``dedup_store.find_duplicate``
for new random texts at both sizes, in the same run. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from newsflow.adapters import dedup_store, postgres
from newsflow.adapters.embedded import EmbeddedPostgres
from newsflow.domain import dedup

_WORDS = [f"w{i}" for i in range(20_000)]


def _text(rng: random.Random) -> str:
    return "\n".join(" ".join(rng.choice(_WORDS) for _ in range(40)) + "." for _ in range(15))


async def _store(conn: asyncpg.Connection, n: int, rng: random.Random) -> None:
    articles, bands = [], []
    for _ in range(n):
        key, article_id = dedup.dedup_key(_text(rng)), uuid.uuid4()
        articles.append(
            (
                article_id,
                f"https://bench.invalid/{article_id}",
                dedup.SIGNATURE_VERSION,
                key.exact_key,
                key.shingle_count,
                key.signature,
                article_id,
            )
        )
        bands += [(band, article_id) for band in set(key.bands)]
    await conn.copy_records_to_table(
        "dedup_articles",
        schema_name="newsflow",
        records=articles,
        columns=["article_id", "url", "signature_version", "exact_key", "shingle_count", "signature", "canonical_id"],
    )
    await conn.copy_records_to_table(
        "dedup_bands", schema_name="newsflow", records=bands, columns=["band_hash", "article_id"]
    )
    await conn.execute("ANALYZE newsflow.dedup_articles; ANALYZE newsflow.dedup_bands")


async def _time_lookups(conn: asyncpg.Connection, n: int, rng: random.Random) -> dict[str, float]:
    keys = [dedup.dedup_key(_text(rng)) for _ in range(n)]
    times = []
    for key in keys:
        start = time.perf_counter()
        await dedup_store.find_duplicate(conn, uuid.uuid4(), key)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 3), "p95_ms": round(times[int(n * 0.95)], 3)}


async def run(small: int, large: int, lookups: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pgdata", delete_on_stop=True)
        await asyncio.to_thread(pg.start)
        try:
            conn = await postgres.connect(await pg.ensure_database("bench"))
            await postgres.migrate(conn)
            rng = random.Random(1)
            await _store(conn, small, rng)
            at_small = await _time_lookups(conn, lookups, rng)
            await _store(conn, large - small, rng)
            at_large = await _time_lookups(conn, lookups, rng)
            band_rows = await conn.fetchval("SELECT count(*) FROM newsflow.dedup_bands")
            await conn.close()
        finally:
            await asyncio.to_thread(pg.stop)
    return {
        "stored_small": small,
        "lookup_small": at_small,
        "stored_large": large,
        "lookup_large": at_large,
        "band_rows_large": band_rows,
        "p50_ratio_large_over_small": round(at_large["p50_ms"] / at_small["p50_ms"], 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", type=int, default=2_000)
    p.add_argument("--large", type=int, default=200_000)
    p.add_argument("--lookups", type=int, default=200)
    args = p.parse_args()
    print(json.dumps(asyncio.run(run(args.small, args.large, args.lookups))))


if __name__ == "__main__":
    main()
