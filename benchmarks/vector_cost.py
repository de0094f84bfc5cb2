"""What the vector stage adds to a stage worker: CPU per article and memory, measured in one fresh process.

    python -m benchmarks.vector_cost ../shared/data/story-clusters/giveme5w1h-news-cluster/articles.jsonl

Loads the cheap stages as a stage worker does (language and entity models warm), reads the
memory, loads the vector model, reads it again, then times ``article_vectors.embed`` alone
(process CPU time) over the articles' cleaned title and text. One thread, as in a worker.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from newsflow.domain import article_vectors, entities, language
from newsflow.domain.cleaning.cleaner import Cleaned, clean_article
from newsflow.domain.contract import RawArticleV1


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("articles", type=Path, help="a JSON-lines file with title and text per line")
    parser.add_argument("--limit", type=int, default=300)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.articles.read_text(encoding="utf-8").splitlines()][: args.limit]
    texts: list[tuple[str | None, str]] = []
    for r in rows:
        msg = RawArticleV1.model_validate(
            {
                "url": "https://cost.invalid/",
                "source": "cost",
                "fetched_at": "2026-01-01T00:00:00+00:00",
                "title": r.get("title") or None,
                "text": r.get("text") or r.get("title") or "-",
            }
        )
        cleaned = clean_article(msg)
        if isinstance(cleaned, Cleaned):
            texts.append((cleaned.title, cleaned.text))
    entities.warm_up()
    language.detect_article("warm", "The stage worker reads one article first.")
    before = {f: _status_kib(f) for f in ("VmRSS", "VmSize")}
    started = time.process_time()
    article_vectors.warm_up()
    load_s = time.process_time() - started
    after = {f: _status_kib(f) for f in ("VmRSS", "VmSize")}
    article_vectors.embed(*texts[0])
    started = time.process_time()
    for title, text in texts:
        article_vectors.embed(title, text)
    per_article_ms = (time.process_time() - started) * 1000 / len(texts)
    report = {
        "articles": len(texts),
        "cpu_ms_per_article": round(per_article_ms, 2),
        "model_load_cpu_s": round(load_s, 2),
        "rss_added_mib": round((after["VmRSS"] - before["VmRSS"]) / 1024, 1),
        "address_space_added_mib": round((after["VmSize"] - before["VmSize"]) / 1024, 1),
        "rss_after_mib": round(_status_kib("VmRSS") / 1024, 1),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "event_vector_chars": len(article_vectors.encode(article_vectors.embed(*texts[0]))),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
