"""Main-text extraction quality: newsflow's cleaner against bare trafilatura, in the same run.

Two public benchmarks, read in place (never copied: their licenses are for evaluation):

- ``scrapinghub-aeb``: full gold bodies. Score: word-token multisets (regex ``\\w+``),
  per-page precision and recall, averaged over pages, F1 of the averages.
- ``trafilatura-eval``: per page, snippets that must and must not appear. Score as
  trafilatura's own evaluation: a found "with" snippet is a true positive, a
  missing one a false negative, a found "without" snippet a false positive.

Bare trafilatura runs with its default settings (``trafilatura.extract(html)``).
"""

from __future__ import annotations

import gzip
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import trafilatura
from trafilatura.utils import decode_file

from newsflow.domain.cleaning.cleaner import CleaningFailure, clean_article
from newsflow.domain.contract import RawArticleV1

_TOKEN = re.compile(r"\w+")
_WS = re.compile(r"\s+")
Extractor = Callable[[str, str], str]


def newsflow_text(html: str, url: str) -> str:
    url = url.strip()
    if not url.startswith(("http://", "https://")) or " " in url:  # some benchmark keys are file names
        url = f"https://benchmark.invalid/{quote(url)}"
    msg = RawArticleV1(url=url, source=urlsplit(url).hostname or "unknown", fetched_at=datetime.now(UTC), html=html)
    cleaned = clean_article(msg)
    return "" if isinstance(cleaned, CleaningFailure) else cleaned.text


def bare_trafilatura_text(html: str, url: str) -> str:
    return trafilatura.extract(html) or ""


EXTRACTORS: dict[str, Extractor] = {"newsflow": newsflow_text, "trafilatura": bare_trafilatura_text}


@dataclass
class _Totals:
    precision: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    tp: int = 0
    fp: int = 0
    fn: int = 0
    seconds: float = 0.0


def token_scores(predicted: str, gold: str) -> tuple[float, float]:
    """Precision and recall of predicted word tokens against gold tokens, as multisets."""
    p, g = Counter(_TOKEN.findall(predicted)), Counter(_TOKEN.findall(gold))
    tp = sum((p & g).values())
    n_pred, n_gold = sum(p.values()), sum(g.values())
    precision = tp / n_pred if n_pred else (1.0 if not n_gold else 0.0)
    recall = tp / n_gold if n_gold else 1.0
    return precision, recall


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def _timed(extractor: Extractor, html: str, url: str, totals: _Totals) -> str:
    start = time.perf_counter()
    text = extractor(html, url)
    totals.seconds += time.perf_counter() - start
    return text


def _aeb_pages(root: Path) -> Iterator[tuple[str, str, str]]:
    gold = json.loads((root / "ground-truth.json").read_text(encoding="utf-8"))
    for item_id, entry in sorted(gold.items()):
        html = gzip.decompress((root / "html" / f"{item_id}.html.gz").read_bytes()).decode("utf-8")
        yield html, entry["url"], entry["articleBody"]


def score_aeb(root: Path, limit: int | None = None) -> dict[str, dict[str, float]]:
    totals = {name: _Totals() for name in EXTRACTORS}
    pages = 0
    for html, url, gold in _aeb_pages(root):
        if limit is not None and pages >= limit:
            break
        pages += 1
        for name, extractor in EXTRACTORS.items():
            p, r = token_scores(_timed(extractor, html, url, totals[name]), gold)
            totals[name].precision.append(p)
            totals[name].recall.append(r)
    out: dict[str, dict[str, float]] = {}
    for name, t in totals.items():
        p, r = sum(t.precision) / pages, sum(t.recall) / pages
        out[name] = _scores(pages, p, r, t.seconds)
    return out


def score_snippets(root: Path, limit: int | None = None) -> dict[str, dict[str, float]]:
    gold = json.loads((root / "evaldata.json").read_text(encoding="utf-8"))
    totals = {name: _Totals() for name in EXTRACTORS}
    pages = 0
    for url, entry in sorted(gold.items()):
        if limit is not None and pages >= limit:
            break
        pages += 1
        html = decode_file(gzip.decompress((root / entry["local_path"]).read_bytes()))
        for name, extractor in EXTRACTORS.items():
            t = totals[name]
            text = _WS.sub(" ", _timed(extractor, html, url, t))
            for snippet in entry.get("with", []):
                if _WS.sub(" ", snippet).strip() in text:
                    t.tp += 1
                else:
                    t.fn += 1
            t.fp += sum(_WS.sub(" ", s).strip() in text for s in entry.get("without", []))
    out: dict[str, dict[str, float]] = {}
    for name, t in totals.items():
        p = t.tp / (t.tp + t.fp) if t.tp + t.fp else 0.0
        r = t.tp / (t.tp + t.fn) if t.tp + t.fn else 0.0
        out[name] = _scores(pages, p, r, t.seconds)
    return out


def evaluate(data_dir: Path, limit: int | None = None) -> dict[str, object]:
    """Score every benchmark found under ``data_dir`` (the extraction-benchmark directory)."""
    report: dict[str, object] = {"trafilatura_version": trafilatura.__version__}
    if (data_dir / "scrapinghub-aeb").is_dir():
        report["scrapinghub-aeb"] = score_aeb(data_dir / "scrapinghub-aeb", limit)
    if (data_dir / "trafilatura-eval").is_dir():
        report["trafilatura-eval"] = score_snippets(data_dir / "trafilatura-eval", limit)
    if len(report) == 1:
        raise FileNotFoundError(f"no scrapinghub-aeb/ or trafilatura-eval/ under {data_dir}")
    return report


def _scores(pages: int, precision: float, recall: float, seconds: float) -> dict[str, float]:
    return {
        "pages": pages,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(_f1(precision, recall), 4),
        "pages_per_s": round(pages / seconds, 1),
    }
