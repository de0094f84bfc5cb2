"""Quality of the enrichment stages: language, entities, dedup.

- language: accuracy on ``langid/`` (news headlines and descriptions in 30
  languages; sentences in 75), with ``und`` counted as wrong, plus coverage
  (share given a code) and accuracy on what was given a code. Norwegian ``nb``
  and ``no`` are one language.
- entities: precision and recall per (type, name) against the labels in
  ``entities_gold.json`` (shipped beside this module) (our own reading of two seeds); a
  prediction matches a gold entity of the same type when any of their names or
  aliases are equal after folding.
- dedup: copies made from real articles of ``story-clusters/giveme5w1h-news-cluster``
  (other site chrome; truncated with a "read more" line; lightly edited) must be
  found, and different articles about the same event (hard negatives) must not.
  Every text goes through the cleaning stage first, as in the pipeline.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from newsflow.domain import dedup, entities, language
from newsflow.domain.cleaning.cleaner import Cleaned, clean_article
from newsflow.domain.contract import RawArticleV1
from newsflow.samples import SEEDS

GOLD = Path(__file__).with_name("entities_gold.json")
_SAME = {"no": "nb"}


def _lang(code: str) -> str:
    return _SAME.get(code, code)


def _score_language(items: list[tuple[str, str]]) -> dict[str, float]:
    decided = correct = 0
    for gold, text in items:
        code = language.detect(text).code
        if code != language.UNDETERMINED:
            decided += 1
            correct += _lang(code) == _lang(gold)
    n = len(items)
    return {
        "items": n,
        "accuracy": round(correct / n, 4),
        "coverage": round(decided / n, 4),
        "accuracy_when_decided": round(correct / decided, 4) if decided else 0.0,
    }


def evaluate_language(langid_dir: Path) -> dict[str, Any]:
    babel = json.loads((langid_dir / "babel-briefings-sample" / "sample_articles.json").read_text(encoding="utf-8"))
    out: dict[str, Any] = {"detector": language.DETECTOR}
    for field in ("title", "description"):
        out[f"babel_{field}s"] = _score_language(
            [(a["language"], a[field]) for a in babel if (a.get(field) or "").strip()]
        )
    for kind in ("sentences", "word-pairs"):
        items = [
            (f.stem, line.strip())
            for f in sorted((langid_dir / "lingua-testdata" / kind).glob("*.txt"))
            for line in f.read_text(encoding="utf-8").split("\n")  # not splitlines(): U+2028 occurs inside lines
            if line.strip()
        ]
        out[f"lingua_{kind}"] = _score_language(items)
    return out


def _clean_text(text: str, source: str = "eval", **fields: Any) -> Cleaned | None:
    msg = RawArticleV1.model_validate(
        {
            "url": f"https://{re.sub(r'[^a-z0-9]+', '-', source.lower())}.invalid/{random.random()}",
            "source": source,
            "fetched_at": datetime.now(UTC),
            "text": text,
            **fields,
        }
    )
    result = clean_article(msg)
    return result if isinstance(result, Cleaned) else None


def evaluate_entities(gold_file: Path = GOLD) -> dict[str, Any]:
    gold = json.loads(gold_file.read_text(encoding="utf-8"))["articles"]
    manifest = json.loads((SEEDS / "manifest.json").read_text(encoding="utf-8"))["files"]
    tp = fp = fn = 0
    misses: list[str] = []
    extras: list[str] = []
    for name, labels in gold.items():
        meta = manifest[name]
        cleaned = _clean_text(
            (SEEDS / name).read_text(encoding="utf-8"), meta["source"], published_at=meta["published_at"]
        )
        assert cleaned is not None
        predicted = entities.extract(cleaned.text, "en").entities
        gold_keys = [(g["type"], {entities.fold(n) for n in [g["name"], *g["aliases"]]}) for g in labels]
        matched: set[int] = set()
        for p in predicted:
            keys = {entities.fold(n) for n in [p["name"], *p["aliases"]]}
            hit = next(
                (i for i, (t, k) in enumerate(gold_keys) if t == p["type"] and k & keys and i not in matched), None
            )
            if hit is None:
                fp += 1
                extras.append(f"{p['type']}:{p['name']}")
            else:
                tp += 1
                matched.add(hit)
        fn += len(labels) - len(matched)
        misses += [f"{labels[i]['type']}:{labels[i]['name']}" for i in range(len(labels)) if i not in matched]
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return {
        "model": entities.MODEL,
        "articles": len(gold),
        "gold_entities": tp + fn,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / (precision + recall), 4),
        "missed": misses,
        "spurious": extras,
    }


_CHROME_HEAD = ["Skip to main content", "Home » News » World", "Subscribe", "Share on Facebook Share on Twitter"]
_CHROME_FOOT = [
    "Related stories",
    "Leave a Reply",
    "© 2024 Metro Wire. All rights reserved.",
    "Tags: news, world, politics",
    "Metro Wire is read by two million people every month.",
]
_SENTENCE = re.compile(r"(?<=[.!?\"”])\s+(?=[\"“A-Z0-9])")


def _variants(text: str, rng: random.Random) -> dict[str, str]:
    paragraphs = [p for p in text.split("\n") if p.strip()]
    title, body = paragraphs[0], paragraphs[1:]
    chrome = "\n\n".join([*rng.sample(_CHROME_HEAD, 2), title, *body, *rng.sample(_CHROME_FOOT, 3)])
    cut = max(1, round(len(body) * rng.uniform(0.4, 0.6)))
    truncated = "\n\n".join([title, *body[:cut], "Read more: the full story on our partner's site"])
    sentences = [s for p in body for s in _SENTENCE.split(p)]
    if len(sentences) > 3:
        del sentences[rng.randrange(1, len(sentences))]
    words = " ".join(sentences).split()
    for _ in range(min(4, len(words) // 50 + 1)):
        words[rng.randrange(len(words))] = rng.choice(["reportedly", "also", "new", "several", "said"])
    edited = "\n\n".join([title, " ".join(words)])
    return {"chrome": chrome, "truncated": truncated, "edited": edited}


def evaluate_dedup(clusters_dir: Path, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    articles: list[tuple[int, str]] = []
    for line in (clusters_dir / "giveme5w1h-news-cluster" / "articles.jsonl").read_text(encoding="utf-8").splitlines():
        a = json.loads(line)
        text = f"{a.get('title') or ''}\n\n{a.get('text') or ''}"
        if len(text.split()) >= 100:
            articles.append((a["event_id"], text))
    keys: list[dedup.DedupKey | None] = []
    for _, text in articles:
        cleaned = _clean_text(text)
        keys.append(dedup.dedup_key(cleaned.text) if cleaned else None)

    def near(a: dedup.DedupKey, b: dedup.DedupKey) -> bool:
        if a.exact_key == b.exact_key:
            return True
        return dedup.similarity(a.signature, a.shingle_count, b.signature, b.shingle_count).near_duplicate

    found: dict[str, list[bool]] = defaultdict(list)
    for (_, text), key in zip(articles, keys, strict=True):
        if key is None:
            continue
        for kind, copy in _variants(text, rng).items():
            cleaned = _clean_text(copy, "Metro Wire")
            found[kind].append(cleaned is not None and near(key, dedup.dedup_key(cleaned.text)))
    by_event: dict[int, list[int]] = defaultdict(list)
    for i, (event, _) in enumerate(articles):
        by_event[event].append(i)
    false_positives = hard_pairs = 0
    for ids in by_event.values():
        for i, j in itertools.combinations(ids, 2):
            if keys[i] is None or keys[j] is None or articles[i][1] == articles[j][1]:
                continue
            hard_pairs += 1
            false_positives += near(keys[i], keys[j])  # type: ignore[arg-type]
    true_positives = sum(sum(v) for v in found.values())
    return {
        "articles": len(articles),
        "recall": {kind: round(sum(v) / len(v), 4) for kind, v in found.items()},
        "positives": sum(len(v) for v in found.values()),
        "hard_negative_pairs": hard_pairs,
        "flagged_hard_negatives": false_positives,
        "precision": round(true_positives / (true_positives + false_positives), 4),
        "note": "flagged same-event pairs may be real copies (wire stories reprinted): read them before calling "
        "them errors",
    }


def evaluate(data_dir: Path | None) -> dict[str, Any]:
    """Everything the shared data allows; entities need only the repository's own fixtures."""
    report: dict[str, Any] = {"entities": evaluate_entities()}
    if data_dir is not None and (data_dir / "langid").is_dir():
        report["language"] = evaluate_language(data_dir / "langid")
    if data_dir is not None and (data_dir / "story-clusters").is_dir():
        report["dedup"] = evaluate_dedup(data_dir / "story-clusters")
    return report
