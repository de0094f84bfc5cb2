"""The benchmark stream: real article text as raw contract-v1 messages, with duplicates.

Texts are read at run time, never copied into the repository: the five seeds in
``tests/fixtures/seeds`` always, and when ``../shared/data/story-clusters`` is
present (next to the repository) the English full-text sets there:
Giveme5W1H (``articles.jsonl``), the English sources of WikinewsSum, Gedikli's
business/energy articles and WikiRef220. Without ``../shared`` the stream is
built from the seeds alone, which the caller must say (``Corpus.fallback``).

Composition (deterministic given ``seed``), of ``n`` messages:

- originals: each corpus text once, under its outlet (the real site name where
  the data set gives one), with that outlet's site chrome around the body, as a
  scraper would deliver it;
- ``exact_share`` exact duplicates: the same ``text`` byte for byte, another URL
  and another source (syndication), sent a little after the original;
- ``near_share`` near duplicates, in turn: the body with another site's chrome
  lines instead of the original's; the body truncated (last 20–35 % of its
  paragraphs gone, with a "Continue reading" line); the body lightly edited
  (a few words replaced, one sentence dropped, a credit line added);
- ``bad_share`` bad messages (invalid JSON, a missing field, an empty body, a bad
  URL), which the pipeline must reject to the dead-letter topic.

When ``n`` asks for more originals than the corpus holds, the extra originals
are recycled texts under new URLs, i.e. exact duplicates, and are counted as such
(``Stream.counts`` is what was built, not what was asked).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from newsflow.samples import SEEDS

REPO = Path(__file__).resolve().parents[1]
SHARED_CLUSTERS = REPO.parent / "shared" / "data" / "story-clusters"

MIN_WORDS = 60  # shorter "articles" (crawler stubs, video pages) are left out of the corpus

# Site chrome of the kind scrapers leave around the body; each outlet gets its own fixed set,
# so an outlet's lines repeat across its articles (that is what the learned chrome picks up).
_HEADER_CHROME = [
    "Skip to main content",
    "Menu",
    "Search",
    "Sign in",
    "Subscribe",
    "Home | World | Business | Politics | Tech",
    "Breaking News",
    "Live TV",
    "Newsletters",
    "Advertisement",
    "Most Read",
    "Latest Stories",
    "Trending Now",
    "Log in / Register",
    "Edition: International",
    "Listen to this article",
]
_FOOTER_CHROME = [
    "Share this article",
    "Share on Facebook",
    "Share on Twitter",
    "Copy link",
    "Follow us on Twitter",
    "Sign up for our daily newsletter",
    "Read more:",
    "Related Articles",
    "Advertisement",
    "All rights reserved.",
    "Terms of Use | Privacy Policy | Cookie Settings",
    "Contact us",
    "About us",
    "Comments are closed.",
    "Click here to subscribe",
    "More from this section",
    "Recommended for you",
    "Report an error",
    "Topics",
    "Back to top",
]
_EDIT_SWAPS = {
    "said": "stated",
    "says": "stated",
    "told": "said to",
    "announced": "unveiled",
    "after": "following",
    "before": "ahead of",
    "about": "around",
    "big": "large",
    "also": "additionally",
    "people": "individuals",
    "government": "administration",
    "officials": "authorities",
    "Monday": "Tuesday",
    "week": "weekend",
}
_STREAM_EPOCH = dt.datetime(2024, 3, 4, 6, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class CorpusText:
    title: str | None
    text: str
    source: str
    published_at: dt.datetime | None
    origin: str  # which data set


@dataclass
class Corpus:
    texts: list[CorpusText]
    sets: dict[str, int]
    fallback: bool  # True: ../shared was absent, seeds only
    note: str


@dataclass(frozen=True)
class BenchMessage:
    index: int
    url: str
    key: bytes
    value: bytes
    kind: str  # original | exact | near | bad
    near_kind: str | None = None  # other_chrome | truncated | edited
    of_index: int | None = None  # the original it copies


@dataclass
class Stream:
    messages: list[BenchMessage]
    warmup: list[BenchMessage]
    corpus: Corpus
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def expected_articles(self) -> int:
        """Messages that should end up as articles with a story (all but the bad ones)."""
        return sum(m.kind != "bad" for m in self.messages)

    def describe(self) -> dict[str, object]:
        return {
            **self.counts,
            "corpus_texts": len(self.corpus.texts),
            "corpus_sets": self.corpus.sets,
            "corpus_fallback_seeds_only": self.corpus.fallback,
            "corpus_note": self.corpus.note,
            "mean_words": round(sum(len(t.text.split()) for t in self.corpus.texts) / max(1, len(self.corpus.texts))),
            "value_bytes_total": sum(len(m.value) for m in self.messages),
        }


def _date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = dt.datetime.strptime(value.strip(), "%B %d, %Y")
        except ValueError:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _site(url: str | None) -> str | None:
    if not url:
        return None
    host = urlparse(url).hostname or ""
    return host.removeprefix("www.") or None


def _seed_texts() -> list[CorpusText]:
    manifest = json.loads((SEEDS / "manifest.json").read_text(encoding="utf-8"))["files"]
    return [
        CorpusText(
            None,
            (SEEDS / name).read_text(encoding="utf-8"),
            str(meta["source"]),
            _date(str(meta.get("published_at") or "")),
            "seeds",
        )
        for name, meta in sorted(manifest.items())
    ]


def _shared_texts(root: Path) -> dict[str, list[CorpusText]]:
    sets: dict[str, list[CorpusText]] = {}
    path = root / "giveme5w1h-news-cluster" / "articles.jsonl"
    if path.exists():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        sets["giveme5w1h"] = [
            CorpusText(
                r.get("title"),
                r["text"],
                r.get("source_domain", "").removeprefix("www.") or "giveme5w1h",
                _date(r.get("date_publish")),
                "giveme5w1h",
            )
            for r in rows
            if r.get("text") and r.get("language", "en") == "en"
        ]
    path = root / "wikinewssum-en-sample" / "source_articles.jsonl"
    if path.exists():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        sets["wikinewssum"] = [
            CorpusText(
                r.get("title"),
                r["text"],
                _site(r.get("url")) or "wikinewssum-source",
                _date(r.get("wikinews_date")),
                "wikinewssum",
            )
            for r in rows
            if r.get("text") and r.get("language") == "en"
        ]
    for path in sorted((root / "gedikli-business-energy-news").glob("*article_texts.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            sets["gedikli"] = [
                CorpusText(
                    r.get("title"),
                    r["text"],
                    _site(r.get("paperurl") or r.get("url")) or "gedikli",
                    _date(r.get("date")),
                    "gedikli",
                )
                for r in csv.DictReader(fh)
                if r.get("text")
            ]
    texts_dir = root / "wikiref220" / "texts"
    if texts_dir.is_dir():
        items = []
        for p in sorted(texts_dir.glob("*.txt")):
            raw = p.read_bytes().decode("cp1252", errors="replace")
            lines = [ln for ln in raw.splitlines()]
            title = next((ln.strip() for ln in lines if ln.strip()), None)
            topic = p.name.split(".")[0]
            items.append(CorpusText(title, raw, f"wikiref-{topic.lower()}", None, "wikiref220"))
        sets["wikiref220"] = items
    return sets


def load_corpus(shared: Path | None = SHARED_CLUSTERS) -> Corpus:
    """Seeds plus the shared English texts (read in place), without exact repeats or stubs."""
    texts = _seed_texts()
    sets: dict[str, int] = {"seeds": len(texts)}
    fallback = shared is None or not shared.is_dir()
    if not fallback:
        assert shared is not None
        for name, items in _shared_texts(shared).items():
            texts.extend(items)
            sets[name] = len(items)
    seen: set[str] = set()
    kept: list[CorpusText] = []
    for t in texts:
        norm = " ".join(t.text.split()).casefold()
        digest = hashlib.sha256(norm.encode()).hexdigest()
        if digest in seen or (len(norm.split()) < MIN_WORDS and t.origin != "seeds"):
            continue
        seen.add(digest)
        kept.append(t)
    note = f"seeds only: {shared} is absent" if fallback else f"seeds + English texts read in place from {shared}"
    sets_kept: dict[str, int] = {}
    for t in kept:
        sets_kept[t.origin] = sets_kept.get(t.origin, 0) + 1
    return Corpus(kept, sets_kept, fallback, note)


def _slug(text: str | None, limit: int = 60) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", (text or "article").casefold()).strip("-")
    return s[:limit].rstrip("-") or "article"


def _host(source: str) -> str:
    return f"{_slug(source, 40)}.bench.invalid"


class _Outlets:
    """Per-source chrome (fixed per outlet, drawn once from the seeded RNG)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._chrome: dict[str, tuple[list[str], list[str]]] = {}

    def chrome(self, source: str) -> tuple[list[str], list[str]]:
        if source not in self._chrome:
            r = random.Random(f"{self.rng.random()}-{source}")
            head = r.sample(_HEADER_CHROME, r.randint(1, 3))
            foot = [*r.sample(_FOOTER_CHROME, r.randint(2, 4)), f"© {r.randint(2015, 2024)} {source}"]
            self._chrome[source] = (head, foot)
        return self._chrome[source]

    def dress(self, source: str, body: str) -> str:
        head, foot = self.chrome(source)
        return "\n".join([*head, body.strip(), *foot])


def _truncate(body: str, rng: random.Random) -> str:
    paras = [p for p in body.strip().split("\n") if p.strip()]
    if len(paras) >= 4:
        keep = max(2, round(len(paras) * rng.uniform(0.65, 0.8)))
        paras = paras[:keep]
    else:
        words = " ".join(paras).split()
        paras = [" ".join(words[: max(20, round(len(words) * rng.uniform(0.65, 0.8)))])]
    return "\n".join([*paras, "Continue reading the full story"])


def _edit(body: str, rng: random.Random) -> str:
    paras = [p for p in body.strip().split("\n") if p.strip()]
    out = []
    dropped = False
    for p in paras:
        sentences = re.split(r"(?<=[.!?])\s+", p)
        if not dropped and len(sentences) > 2 and rng.random() < 0.3:
            del sentences[rng.randrange(1, len(sentences))]
            dropped = True
        words = " ".join(sentences).split(" ")
        for i, w in enumerate(words):
            swap = _EDIT_SWAPS.get(w)
            if swap and rng.random() < 0.5:
                words[i] = swap
        out.append(" ".join(words))
    out.append(f"(Reporting by staff; editing by {rng.choice(['A. Smith', 'J. Doe', 'M. Rossi', 'K. Tanaka'])})")
    return "\n".join(out)


def _message(
    url: str, source: str, text: str, title: str | None, published: dt.datetime | None, fetched: dt.datetime
) -> dict[str, object]:
    msg: dict[str, object] = {
        "url": url,
        "source": source,
        "fetched_at": fetched.isoformat(),
        "text": text,
        "scraper_id": "newsflow-bench",
    }
    if title:
        msg["title"] = title[:2000]
    if published:
        msg["published_at"] = published.isoformat()
    return msg


def _encode(msg: dict[str, object]) -> bytes:
    return json.dumps(msg, ensure_ascii=False).encode()


def _bad(index: int, rng: random.Random, at: dt.datetime) -> tuple[str, bytes]:
    url = f"https://broken-scraper.bench.invalid/item/{index}"
    kind = index % 4
    if kind == 0:
        return url, b'{"url": "' + url.encode() + b'", "source": "Broken", "text": "cut off'
    if kind == 1:
        return url, _encode({"url": url, "source": "Broken", "text": "No fetch time in this message."})
    if kind == 2:
        return url, _encode({"url": url, "source": "Broken", "fetched_at": at.isoformat(), "text": "   "})
    return url, _encode({"url": "not a url", "source": "Broken", "fetched_at": at.isoformat(), "text": "Bad URL."})


def build_stream(
    n: int,
    *,
    seed: int = 1,
    exact_share: float = 0.30,
    near_share: float = 0.10,
    bad_share: float = 0.01,
    warmup: int = 8,
    corpus: Corpus | None = None,
) -> Stream:
    """``n`` messages in delivery order, plus ``warmup`` messages from texts kept out of the stream."""
    corpus = corpus or load_corpus()
    rng = random.Random(seed)
    texts = list(corpus.texts)
    rng.shuffle(texts)
    # Warm-up texts are kept out of the stream so they never make a stream article a duplicate.
    reserve = min(warmup, max(0, len(texts) - 5))
    warm_texts, texts = texts[:reserve], texts[reserve:]
    outlets = _Outlets(rng)
    sources = sorted({t.source for t in corpus.texts})
    syndicators = sources + [f"Wire Mirror {i}" for i in range(1, 13)]

    n_bad = round(n * bad_share)
    n_exact = round(n * exact_share)
    n_near = round(n * near_share)
    n_orig = max(1, n - n_bad - n_exact - n_near)
    recycled = max(0, n_orig - len(texts))  # more originals asked than texts: recycled = exact copies

    # Slots: an original at each integer slot; copies follow their original 1–150 slots later.
    placed: list[tuple[float, int, dict[str, object] | bytes, str, str | None, int | None, str]] = []
    originals: list[tuple[CorpusText, str, str, dt.datetime]] = []  # text, body as sent, url, fetched
    seq = 0
    for i in range(n_orig):
        t = texts[i % len(texts)]
        fetched = _STREAM_EPOCH + dt.timedelta(seconds=20 * i)
        url = f"https://{_host(t.source)}/{fetched:%Y/%m/%d}/{_slug(t.title or t.text[:60])}-{i}"
        body = outlets.dress(t.source, t.text)
        kind = "original" if i < len(texts) else "exact"
        of = None if kind == "original" else i % len(texts)
        placed.append(
            (float(i), seq, _message(url, t.source, body, t.title, t.published_at, fetched), kind, None, of, url)
        )
        seq += 1
        originals.append((t, body, url, fetched))
    base = min(n_orig, len(texts))
    near_kinds = ["other_chrome", "truncated", "edited"]
    for j in range(n_exact + n_near):
        is_near = j >= n_exact
        k = rng.randrange(base)
        t, body, _, fetched = originals[k]
        source = rng.choice([s for s in syndicators if s != t.source] or syndicators)
        slot = k + rng.uniform(1, 150)
        when = fetched + dt.timedelta(minutes=rng.randint(5, 600))
        published = (t.published_at + dt.timedelta(minutes=rng.randint(5, 600))) if t.published_at else None
        url = f"https://{_host(source)}/{when:%Y/%m/%d}/{_slug(t.title or t.text[:60])}-c{j}"
        if not is_near:
            text, nk = body, None
        else:
            nk = near_kinds[(j - n_exact) % 3]
            r = random.Random(f"{seed}-near-{j}")
            if nk == "other_chrome":
                text = outlets.dress(source, t.text)
            elif nk == "truncated":
                text = outlets.dress(source, _truncate(t.text, r))
            else:
                text = outlets.dress(source, _edit(t.text, r))
        placed.append(
            (
                slot,
                seq,
                _message(url, source, text, t.title, published, when),
                "near" if is_near else "exact",
                nk,
                k,
                url,
            )
        )
        seq += 1
    for b in range(n_bad):
        slot = rng.uniform(0, n_orig)
        url, raw = _bad(b, rng, _STREAM_EPOCH)
        placed.append((slot, seq, raw, "bad", None, None, url))
        seq += 1
    placed.sort(key=lambda p: (p[0], p[1]))

    messages = []
    for idx, (_, _, payload, kind, nk, of, url) in enumerate(placed):
        value = payload if isinstance(payload, bytes) else _encode(payload)
        messages.append(BenchMessage(idx, url, url.encode(), value, kind, nk, of))
    warm = []
    for w, t in enumerate(warm_texts):
        url = f"https://warmup.bench.invalid/{w}-{_slug(t.title or t.text[:60])}"
        fetched = _STREAM_EPOCH - dt.timedelta(days=1, seconds=w)
        warm.append(
            BenchMessage(
                w,
                url,
                url.encode(),
                _encode(_message(url, "Warm-up", t.text, t.title, t.published_at, fetched)),
                "warmup",
            )
        )
    counts = {
        "articles": len(messages),
        "originals": sum(m.kind == "original" for m in messages),
        "duplicates_exact": sum(m.kind == "exact" for m in messages),
        "duplicates_near": sum(m.kind == "near" for m in messages),
        "near_other_chrome": sum(m.near_kind == "other_chrome" for m in messages),
        "near_truncated": sum(m.near_kind == "truncated" for m in messages),
        "near_edited": sum(m.near_kind == "edited" for m in messages),
        "bad_messages": sum(m.kind == "bad" for m in messages),
        "recycled_as_exact": recycled,
        "sources": len({json.loads(m.value)["source"] for m in messages if m.kind != "bad"}),
        "seed": seed,
    }
    return Stream(messages, warm, corpus, counts)


def main() -> None:
    """Describe the stream a size and seed give (no broker needed)."""
    import argparse

    p = argparse.ArgumentParser(description="describe the benchmark stream")
    p.add_argument("--articles", type=int, default=1500)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dump", type=Path, help="write the messages as JSONL here (outside the repository)")
    args = p.parse_args()
    stream = build_stream(args.articles, seed=args.seed)
    if args.dump:
        with args.dump.open("wb") as fh:
            for m in stream.messages:
                fh.write(m.value + b"\n")
    print(json.dumps(stream.describe()))


if __name__ == "__main__":
    main()
