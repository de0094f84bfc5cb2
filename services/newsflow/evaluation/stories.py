"""Story clustering quality: B-cubed precision, recall and F1 on labelled story data, replayed as a stream.

Articles are fed in publication order through the cleaning and entity stages and
the online clusterer with its fixed settings. Beside it, in the same run, a
simple baseline: single-pass TF-IDF cosine against story centroids (no entities,
no time), with its best threshold chosen in hindsight from a sweep.

Data read in place: ``story-clusters/giveme5w1h-news-cluster`` (event ids 2–63
are tight events, 64–77 months-long threads; both are scored, separately).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from newsflow.domain import clustering, entities
from newsflow.domain.cleaner import Cleaned, clean_article
from newsflow.domain.contract import RawArticleV1

TIGHT_EVENTS = range(2, 64)


def bcubed(predicted: Sequence[str], gold: Sequence[str]) -> dict[str, float]:
    by_pred: dict[str, list[int]] = defaultdict(list)
    by_gold: dict[str, list[int]] = defaultdict(list)
    for i, (p, g) in enumerate(zip(predicted, gold, strict=True)):
        by_pred[p].append(i)
        by_gold[g].append(i)
    precision = recall = 0.0
    for p, g in zip(predicted, gold, strict=True):
        same = sum(1 for j in by_pred[p] if gold[j] == g)
        precision += same / len(by_pred[p])
        recall += same / len(by_gold[g])
    n = len(gold)
    p, r = precision / n, recall / n
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0}


def _baseline(docs: Sequence[Counter[str]], threshold: float) -> list[str]:
    df: Counter[str] = Counter()
    centroids: list[Counter[str]] = []
    labels: list[str] = []
    for n, counts in enumerate(docs, start=1):
        df.update(counts.keys())
        vec = {t: (1 + math.log(c)) * (math.log((n + 1) / (df[t] + 1)) + 1) for t, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        vec = {t: v / norm for t, v in vec.items()}
        best, best_i = -1.0, -1
        for i, c in enumerate(centroids):
            cn = math.sqrt(sum(v * v for v in c.values())) or 1.0
            score = sum(w * c.get(t, 0.0) for t, w in vec.items()) / cn
            if score > best:
                best, best_i = score, i
        if best >= threshold:
            centroids[best_i].update(vec)
            labels.append(str(best_i))
        else:
            centroids.append(Counter(vec))
            labels.append(str(len(centroids) - 1))
    return labels


def _load_giveme(root: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (root / "articles.jsonl").read_text(encoding="utf-8").splitlines()]
    return sorted(rows, key=lambda r: (r["date_publish"], r["id"]))


def _features(rows: list[dict[str, Any]]) -> list[clustering.ArticleFeatures]:
    features = []
    for r in rows:
        at = datetime.fromisoformat(r["date_publish"]).replace(tzinfo=UTC)
        body = "\n\n".join(x for x in (r.get("description"), r.get("text")) if x and x != "None")
        msg = RawArticleV1.model_validate({"url": r["url"], "source": r["source_domain"], "fetched_at": at,
                                           "published_at": at, "title": r["title"], "text": body or r["title"]})
        cleaned = clean_article(msg)
        text = cleaned.text if isinstance(cleaned, Cleaned) else body
        title = cleaned.title if isinstance(cleaned, Cleaned) else r["title"]
        found = entities.extract(text, "en").entities
        features.append(clustering.ArticleFeatures(
            r["id"], clustering.terms(title, text), frozenset(entities.fold(e["name"]) for e in found), at
        ))
    return features


def _score(features: list[clustering.ArticleFeatures], gold: list[str]) -> dict[str, Any]:
    decisions = clustering.cluster(features)
    sweep = {round(t / 100, 2): bcubed(_baseline([f.terms for f in features], t / 100), gold)
             for t in range(5, 65, 5)}
    best_t = max(sweep, key=lambda t: sweep[t]["f1"])
    return {
        "articles": len(gold), "events": len(set(gold)),
        "newsflow": {**bcubed([d.story_id for d in decisions], gold), "threshold": clustering.THRESHOLD,
                     "stories": len({d.story_id for d in decisions})},
        "baseline_tfidf_hindsight": {**sweep[best_t], "threshold": best_t},
    }


def evaluate(clusters_dir: Path) -> dict[str, Any]:
    rows = _load_giveme(clusters_dir / "giveme5w1h-news-cluster")
    features = _features(rows)
    gold = [str(r["event_id"]) for r in rows]
    tight = [i for i, r in enumerate(rows) if int(r["event_id"]) in TIGHT_EVENTS]
    return {
        "clusterer_version": clustering.CLUSTERER_VERSION,
        "giveme5w1h_tight_events": _score([features[i] for i in tight], [gold[i] for i in tight]),
        "giveme5w1h_all": _score(features, gold),
    }
