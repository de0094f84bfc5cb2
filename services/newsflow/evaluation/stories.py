"""Story clustering quality: B-cubed precision, recall and F1 on labelled story data, replayed as a stream.

Articles are fed in publication order through the cleaning and entity stages and
the online clusterer with its fixed settings (the same on every dataset). Beside
it, in the same run, a simple baseline: single-pass TF-IDF cosine against story
centroids (no entities, no time), with its best threshold chosen in hindsight
from a sweep, per dataset.

Data read in place under ``story-clusters/``:

- ``giveme5w1h-news-cluster``: event ids 2–63 are tight events, 64–77 months-long
  threads; scored on the tight events, on their odd / even event-id halves (the
  tuning protocol in domain/clustering.py uses the odd half as dev set) and on all.
- ``gedikli-business-energy-news``: coder 1's pairwise labels are gold; clusters are
  the connected components of its positive pairs (the README: 35 chains + 10
  singletons). Scored with B-cubed and pairwise P/R/F1 against the labelled pairs;
  coder 2 is scored the same way as the human-agreement ceiling.
- ``uci-news-aggregator-sample``: headlines only. Its timestamps are the crawl time
  of a whole story (a label leak), so the stream is a deterministic shuffle (sha1
  of the row id) with synthetic times spread evenly over the real 1.5 days.
  A deterministic subsample (``UCI_SAMPLE`` rows, lowest sha1) keeps the run short.
- ``wikiref220``: broad topics, no times (all articles get one time; order by sha1
  of the file name); the 11 small "noise" groups keep their own labels.
- ``wikinewssum-en-sample``: weak labels (sources cited by one Wikinews report),
  no source dates (one time for all; order by sha1 of the URL).

Multilingual, read from ``langid/babel-briefings-sample`` beside ``story-clusters/`` and from the
package:

- Babel Briefings: each non-English headline (with its description) and its English translation
  must share a story, apart from every other headline; 30 languages, a dozen scripts. The
  " - <outlet>" suffix both copies carry is cut. Dev: odd ``ID``s; test: even ones.
- ``multilingual_reports.json``: short reports of six invented events in en/fr/es/de/it/pt,
  written for this evaluation, and five unrelated ones.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from newsflow.domain import article_vectors, clusterer_settings, clustering, entities, story_terms
from newsflow.domain.cleaning.cleaner import Cleaned, clean_article
from newsflow.domain.contract import RawArticleV1

TIGHT_EVENTS = range(2, 64)
UCI_SAMPLE = 2000
_NO_TIME = datetime(2020, 1, 1, tzinfo=UTC)


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
    return _prf(precision / n, recall / n)


def _prf(p: float, r: float) -> dict[str, float]:
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0}


def pairwise(predicted: Sequence[str], pairs: Sequence[tuple[int, int, bool]]) -> dict[str, float]:
    """Precision / recall / F1 of "same story?" over labelled pairs of item indexes."""
    tp = sum(1 for i, j, same in pairs if same and predicted[i] == predicted[j])
    fp = sum(1 for i, j, same in pairs if not same and predicted[i] == predicted[j])
    fn = sum(1 for i, j, same in pairs if same and predicted[i] != predicted[j])
    return _prf(tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn) if tp + fn else 0.0)


def _baseline(docs: Sequence[Counter[str]], threshold: float) -> list[str]:
    """Single-pass TF-IDF vs centroids. The inverted index only skips centroids sharing no term
    (cosine 0, below every threshold swept), so the result equals the exhaustive loop."""
    df: Counter[str] = Counter()
    centroids: list[dict[str, float]] = []
    norms: list[float] = []
    by_term: dict[str, list[int]] = defaultdict(list)
    labels: list[str] = []
    for n, counts in enumerate(docs, start=1):
        df.update(counts.keys())
        vec = {t: (1 + math.log(c)) * (math.log((n + 1) / (df[t] + 1)) + 1) for t, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        vec = {t: v / norm for t, v in vec.items()}
        best, best_i = -1.0, -1
        for i in sorted({i for t in vec for i in by_term.get(t, ())}):
            c = centroids[i]
            score = sum(w * c.get(t, 0.0) for t, w in vec.items()) / (norms[i] or 1.0)
            if score > best:
                best, best_i = score, i
        if best >= threshold:
            i = best_i
        else:
            centroids.append({})
            norms.append(0.0)
            i = len(centroids) - 1
        c = centroids[i]
        for t, w in vec.items():
            if t not in c:
                by_term[t].append(i)
            c[t] = c.get(t, 0.0) + w
        norms[i] = math.sqrt(sum(v * v for v in c.values()))
        labels.append(str(i))
    return labels


@dataclass(frozen=True)
class Dataset:
    name: str
    inputs: list[clustering.ArticleInput]
    gold: list[str]
    pairs: list[tuple[int, int, bool]] | None = None
    pairs_coder2: list[tuple[int, int, bool]] | None = None
    note: str = ""


def _article(
    article_id: str, title: str | None, body: str, at: datetime, language: str, url: str, source: str
) -> clustering.ArticleInput:
    body = body or title or "-"
    msg = RawArticleV1.model_validate(
        {
            "url": url,
            "source": source or "unknown",
            "fetched_at": at,
            "published_at": at,
            "title": (title or None) and title[:2000],
            "text": body,
        }
    )
    cleaned = clean_article(msg)
    text = cleaned.text if isinstance(cleaned, Cleaned) else body
    title = cleaned.title if isinstance(cleaned, Cleaned) else title
    found = entities.extract(text, language).entities
    vector = article_vectors.decode(article_vectors.encode(article_vectors.embed(title, text)))  # as the log holds it
    return clustering.ArticleInput(article_id, title, text, tuple(e["name"] for e in found), at, language, vector)


def _sha(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()


def load_giveme(root: Path) -> Dataset:
    rows = [json.loads(line) for line in (root / "articles.jsonl").read_text(encoding="utf-8").splitlines()]
    rows.sort(key=lambda r: (r["date_publish"], r["id"]))
    inputs = []
    for r in rows:
        at = datetime.fromisoformat(r["date_publish"]).replace(tzinfo=UTC)
        body = "\n\n".join(x for x in (r.get("description"), r.get("text")) if x and x != "None")
        inputs.append(_article(str(r["id"]), r["title"], body, at, "en", r["url"], r["source_domain"]))
    return Dataset("giveme5w1h", inputs, [str(r["event_id"]) for r in rows])


def _pairs_file(path: Path, index: dict[str, int]) -> list[tuple[int, int, bool]]:
    out = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        if line.strip():
            u1, u2, rel = line.strip().split(";")
            out.append((index[u1], index[u2], rel.strip() == "1"))
    return out


def load_gedikli(root: Path) -> Dataset:
    with (root / "gedikli-business_energy_news_dataset-2021-06-29-article_texts.csv").open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    rows.sort(key=lambda r: (r["date"], r["url"]))
    index = {r["url"]: i for i, r in enumerate(rows)}
    pairs = _pairs_file(root / "hand_coded" / "story_pairs-2021-06-29-coder1-gedikli.csv", index)
    coder2 = _pairs_file(root / "hand_coded" / "story_pairs-2021-06-29-coder2-unaware_student.csv", index)
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, same in pairs:
        if same:
            a, b = sorted((find(i), find(j)))
            parent[b] = a
    inputs = [
        _article(
            _sha(r["url"])[:16],
            r["title"],
            r["text"],
            datetime.fromisoformat(r["date"]).replace(tzinfo=UTC),
            "en",
            r["url"],
            r["paperurl"],
        )
        for r in rows
    ]
    return Dataset("gedikli", inputs, [str(find(i)) for i in range(len(rows))], pairs, coder2)


def load_uci(root: Path, sample: int = UCI_SAMPLE) -> Dataset:
    with (root / "uci-news-aggregator.first6366.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rows.sort(key=lambda r: _sha(r["ID"]))
    rows = rows[:sample]
    times = [int(r["TIMESTAMP"]) for r in rows]
    start, span = min(times), max(times) - min(times)
    inputs = []
    for i, r in enumerate(rows):
        at = datetime.fromtimestamp(start / 1000, UTC) + timedelta(milliseconds=span * i / len(rows))
        url = r["URL"].replace("\\", "") if r["URL"].startswith("http") else f"https://uci.invalid/{r['ID']}"
        inputs.append(_article(r["ID"], r["TITLE"], r["TITLE"], at, "en", url, r["PUBLISHER"]))
    return Dataset(
        "uci",
        inputs,
        [r["STORY"] for r in rows],
        note=f"deterministic subsample of {len(rows)} of 6,366 rows (lowest sha1(ID)), shuffled, synthetic times",
    )


def load_wikiref(root: Path) -> Dataset:
    with (root / "labels.csv").open(encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: _sha(r["file"]))
    inputs = []
    for r in rows:
        raw = (root / r["file"]).read_bytes().decode("cp1252", errors="replace").replace("\r\n", "\n")
        title, _, body = raw.strip().partition("\n")
        name = Path(r["file"]).name
        inputs.append(
            _article(
                name,
                title.strip(),
                body.strip() or title,
                _NO_TIME,
                "en",
                f"https://wikiref220.invalid/{name}",
                "wikiref220",
            )
        )
    return Dataset("wikiref220", inputs, [r["topic"] for r in rows], note="broad topics, no times")


def load_wikinewssum(root: Path) -> Dataset:
    rows = [json.loads(line) for line in (root / "source_articles.jsonl").read_text(encoding="utf-8").splitlines()]
    rows.sort(key=lambda r: _sha(f"{r['event_id']}/{r['source_index']}/{r['url']}"))
    inputs = []
    for r in rows:
        lang = r.get("language") or "und"
        url = r["url"] if str(r.get("url", "")).startswith("http") else f"https://wikinewssum.invalid/{r['event_id']}"
        inputs.append(
            _article(
                f"{r['event_id']}-{r['source_index']}", r.get("title"), r["text"], _NO_TIME, lang, url, "wikinewssum"
            )
        )
    return Dataset(
        "wikinewssum",
        inputs,
        [str(r["event_id"]) for r in rows],
        note="weak labels (cited by one Wikinews report), no times",
    )


_OUTLET_SUFFIX = re.compile(r"\s+[-–|]\s+[^-–|]{1,60}$")


def _headline(title: str) -> str:
    return _OUTLET_SUFFIX.sub("", html.unescape(title)).strip()


def load_babel(root: Path) -> Dataset:
    rows = json.loads((root / "sample_articles.json").read_text(encoding="utf-8"))
    items: list[tuple[datetime, str, clustering.ArticleInput]] = []
    for r in rows:
        at = datetime.fromisoformat(r["publishedAt"].replace("Z", "+00:00"))
        versions = [(r["language"], r["title"], r.get("description"))]
        if r["language"] != "en" and r.get("en-title"):
            versions.append(("en", r["en-title"], r.get("en-description")))
        for n, (lang, title, description) in enumerate(versions):
            head = _headline(title)
            body = html.unescape(description or "") or head
            url = f"https://babel.invalid/{r['ID']}/{n}"
            items.append((at, _sha(url), _article(url, head, body, at, lang, url, r["source-name"] or "babel")))
    items.sort(key=lambda x: (x[0], x[1]))
    inputs = [a for *_, a in items]
    return Dataset(
        "babel_briefings",
        inputs,
        [a.article_id.split("/")[3] for a in inputs],
        note="each non-English headline + description beside its English translation; 30 languages",
    )


def load_reports() -> Dataset:
    """The multilingual reports written for this evaluation (package data)."""
    text = resources.files("newsflow.evaluation").joinpath("multilingual_reports.json").read_text(encoding="utf-8")
    rows = sorted(json.loads(text)["reports"], key=lambda r: (r["at"], r["id"]))
    inputs = [
        _article(
            r["id"],
            r["title"],
            r["text"],
            datetime.fromisoformat(r["at"]),
            r["language"],
            f"https://reports.invalid/{r['id']}",
            "reports",
        )
        for r in rows
    ]
    return Dataset("own_multilingual_reports", inputs, [r["story"] for r in rows], note="written for newsflow")


def load_all(clusters_dir: Path) -> list[Dataset]:
    return [
        load_giveme(clusters_dir / "giveme5w1h-news-cluster"),
        load_gedikli(clusters_dir / "gedikli-business-energy-news"),
        load_uci(clusters_dir / "uci-news-aggregator-sample"),
        load_wikiref(clusters_dir / "wikiref220"),
        load_wikinewssum(clusters_dir / "wikinewssum-en-sample"),
    ]


def _subset(ds: Dataset, keep: list[int], name: str) -> Dataset:
    return Dataset(name, [ds.inputs[i] for i in keep], [ds.gold[i] for i in keep], note=ds.note)


def final_stories(decisions: Sequence[clustering.Decision]) -> list[str]:
    """Each article's story at the end of the stream: a decision's ``merged`` stories live on as its ``story_id``."""
    absorbed_into: dict[str, str] = {}
    for d in decisions:
        for m in d.merged:
            absorbed_into[m] = d.story_id

    return [clustering.follow_merges(absorbed_into, d.story_id) for d in decisions]


def score_with(
    ds: Dataset, settings: clusterer_settings.ClustererSettings = clusterer_settings.SETTINGS
) -> dict[str, Any]:
    decisions = clustering.cluster(ds.inputs, settings)
    predicted = final_stories(decisions)
    docs = [story_terms.terms(a.title, a.text) for a in ds.inputs]
    runs = {round(t / 100, 2): _baseline(docs, t / 100) for t in range(5, 65, 5)}
    sweep = {t: bcubed(labels, ds.gold) for t, labels in runs.items()}
    best_t = max(sweep, key=lambda t: (sweep[t]["f1"], -t))
    newsflow: dict[str, Any] = {
        **bcubed(predicted, ds.gold),
        "stories": len(set(predicted)),
        "merges": sum(len(d.merged) for d in decisions),
        "background_merges": sum(len(d.background) for d in decisions),
    }
    baseline: dict[str, Any] = {**sweep[best_t], "threshold": best_t, "stories": len(set(runs[best_t]))}
    out: dict[str, Any] = {"articles": len(ds.gold), "labels": len(set(ds.gold))}
    if ds.note:
        out["note"] = ds.note
    if ds.pairs is not None:
        newsflow["pairwise"] = pairwise(predicted, ds.pairs)
        pair_sweep = {t: pairwise(labels, ds.pairs) for t, labels in runs.items()}
        best_pt = max(pair_sweep, key=lambda t: (pair_sweep[t]["f1"], -t))
        baseline["pairwise_hindsight"] = {**pair_sweep[best_pt], "threshold": best_pt}
    if ds.pairs_coder2 is not None and ds.pairs is not None:
        gold_same = {(i, j): same for i, j, same in ds.pairs}
        agree = sum(1 for i, j, same in ds.pairs_coder2 if same and gold_same[(i, j)])
        c2_pos = sum(1 for *_, same in ds.pairs_coder2 if same)
        g_pos = sum(1 for *_, same in ds.pairs if same)
        p, r = agree / c2_pos, agree / g_pos
        out["coder2_pairwise_vs_coder1"] = {
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f1": round(2 * p * r / (p + r), 4),
        }
    out["newsflow"] = newsflow
    out["baseline_tfidf_hindsight"] = baseline
    out["newsflow_minus_baseline_f1"] = round(newsflow["f1"] - baseline["f1"], 4)
    return out


def babel_halves(babel: Dataset) -> tuple[Dataset, Dataset]:
    """Dev (odd ``ID``s) and test (even ones)."""
    odd = [i for i, g in enumerate(babel.gold) if int(g) % 2]
    even = [i for i, g in enumerate(babel.gold) if int(g) % 2 == 0]
    return _subset(babel, odd, "babel_dev"), _subset(babel, even, "babel_test")


def evaluate(clusters_dir: Path, *, signal: str = "across_languages") -> dict[str, Any]:
    """The monolingual sets under ``clusters_dir`` and the multilingual ones (Babel Briefings from
    ``clusters_dir/../langid`` when it is there, and the package's own reports).

    ``signal`` names the dense signal's use (``clusterer_settings.SIGNALS``): the default's, everywhere,
    or off (version 5's decisions); the daemon runs the default.
    """
    settings = clusterer_settings.SIGNALS[signal]

    def score(ds: Dataset) -> dict[str, Any]:
        return score_with(ds, settings)

    giveme, *others = load_all(clusters_dir)
    babel_dir = clusters_dir.parent / "langid" / "babel-briefings-sample"
    ev = [int(g) for g in giveme.gold]
    tight = [i for i, e in enumerate(ev) if e in TIGHT_EVENTS]
    results: dict[str, Any] = {
        "clusterer_version": clusterer_settings.CLUSTERER_VERSION,
        "signal": signal,
        "settings": asdict(settings),
        "giveme5w1h_tight_events": score(_subset(giveme, tight, "tight")),
        "giveme5w1h_tight_dev_odd_ids": score(_subset(giveme, [i for i in tight if ev[i] % 2], "odd")),
        "giveme5w1h_tight_test_even_ids": score(_subset(giveme, [i for i in tight if ev[i] % 2 == 0], "even")),
        "giveme5w1h_all": score(giveme),
    }
    for ds in others:
        results[ds.name] = score(ds)
    if babel_dir.is_dir():
        babel = load_babel(babel_dir)
        dev, test = babel_halves(babel)
        results["babel_briefings"] = score(babel)
        results["babel_briefings_dev_odd_ids"] = score(dev)
        results["babel_briefings_test_even_ids"] = score(test)
    results["own_multilingual_reports"] = score(load_reports())
    return results
