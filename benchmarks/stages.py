"""Throughput of each stage alone, in one process, on the seed articles (scraped text).

    python -m benchmarks.stages [--seconds 4]

The seeds ship with the repository, so this runs anywhere. Prints one JSON line:
articles per second for clean, language, dedup keys and entities, and which is
the slowest. (HTML cleaning is measured by `newsflow eval extraction`.)
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from newsflow.domain import dedup, entities, language
from newsflow.domain.cleaning.cleaner import Cleaned, clean_article
from newsflow.domain.contract import RawArticleV1
from newsflow.samples import SEEDS


def measure(
    fn: Callable[[Any], object], items: Sequence[Any], seconds: float, warm: int | None = None
) -> dict[str, Any]:
    """Items/s of ``fn`` going through ``items`` in order (cycling) for ``seconds``, after a warm-up.

    The warm-up (``warm`` items, default all of them) keeps model loads and caches out of the rate.
    """
    for item in items[: len(items) if warm is None else warm]:
        fn(item)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(items[done % len(items)])
        done += 1
    elapsed = time.perf_counter() - start
    return {"articles_per_s": round(done / elapsed, 1), "items": done, "distinct": min(done, len(items))}


def _rate(fn: Callable[[Any], object], items: Sequence[Any], seconds: float) -> float:
    return float(measure(fn, items, seconds)["articles_per_s"])


def run(seconds: float) -> dict[str, Any]:
    manifest = json.loads((SEEDS / "manifest.json").read_text(encoding="utf-8"))["files"]
    messages = [
        RawArticleV1.model_validate({**meta, "text": (SEEDS / name).read_text(encoding="utf-8")})
        for name, meta in sorted(manifest.items())
    ]
    texts = []
    for m in messages:
        cleaned = clean_article(m)
        assert isinstance(cleaned, Cleaned)
        texts.append(cleaned.text)
    rates = {
        "clean": _rate(clean_article, messages, seconds),
        "language": _rate(language.detect, texts, seconds),
        "dedup": _rate(dedup.dedup_key, texts, seconds),
        "entities": _rate(lambda t: entities.extract(t, "en"), texts, seconds * 2),
    }
    slowest = min(rates, key=lambda k: rates[k])
    return {
        "articles_per_s": rates,
        "slowest_stage": {"name": slowest, "articles_per_s": rates[slowest]},
        "mean_words": round(sum(len(t.split()) for t in texts) / len(texts)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=4.0)
    print(json.dumps(run(p.parse_args().seconds)))


if __name__ == "__main__":
    main()
