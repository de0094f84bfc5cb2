"""Online story clustering: each article joins the best-matching recent story or starts a new one.

Pure (no I/O) and deterministic: the same articles in the same order give the same
decisions; nothing depends on set or dict order, randomness or the wall clock. The
whole state is plain data, so ``pickle`` snapshots it; restored and continued equals
uninterrupted (tests/test_clustering.py).

Algorithm (version 5; version 3 bounded a story's index keys; version 4 added the
title similarity and the delayed re-merge of background pieces, and takes a
centroid's norm after trimming it when an article joins, where version 3 took it
before; version 5 also looks candidate stories up by the title's terms, without
which the title similarity never saw the story of a page whose body is chrome):

- Vector: sublinear-tf · idf over the title (tokens counted ``title_rep`` times),
  the body, and the article's canonical entities folded into ``@entity`` terms
  (weight ``ent_rep``); idf is learned online from every article seen so far
  (``df`` Counter), nothing bundled. Unit length. A second, title-only vector
  feeds the title similarity.
- Candidates: an inverted index from each story's ``index_terms`` heaviest
  centroid terms (entity terms included) to the story, re-keyed as the centroid
  changes; an article looks up its own ``top_terms`` and its title's
  ``title_keys`` heaviest terms (a chrome body's top terms are chrome). Stories
  idle for more than ``window_days`` behind the newest article seen, and beyond
  ``max_stories`` live stories the longest idle ones, are evicted from the index
  and from memory; centroids keep their ``centroid_terms`` heaviest terms. So
  memory is bounded and the cost per article depends on how many live stories
  share its top terms, not on how many stories have existed.
- Score against a candidate story: ``sim · time factor`` with
  ``sim = max(w · cos(article, centroid) + (1 − w) · max cos(article, member),
  w_title · cos(title, story's title centroid))``
  where members are the story's first and latest ``members`` articles (top
  ``member_terms`` terms each) and the time factor is
  ``floor + (1 − floor) · exp(−gap² / 2σ²)``, gap = days outside the story's span.
  The title term rescues pages whose body is site chrome, a photo gallery or a
  digest of other news, but whose title names the event.
- Decision: the best story if its score ≥ ``threshold``, else a new story whose id
  is the article's id (its ``score`` is then the best score it did not reach).
  Any other candidate scoring ≥ ``merge_threshold`` is merged into the joined story
  (``Decision.merged``): the article bridges them.
- Delayed re-merge (``Decision.background``): when an article joins a story, small
  stories (≤ ``remerge_max_size`` articles) whose last article is more than
  ``remerge_gap_days`` older than the story are merged in when the centroid of the
  story with the article reaches ``remerge_threshold`` cosine with theirs. A
  background piece written months before an event is worded unlike any single
  report, but like the reports together. Candidates: the live stories the article
  already scored, plus an archive of the small stories that left the live index
  (until their last article is ``archive_days`` old, at most ``archive_max``,
  indexed under ``archive_terms`` terms), read only when the story's size before
  this decision's merges, plus the article, is a power of two, so a story looks
  there O(log size) times and the live window stays 365 days.
- Reasons: ``shared_entities`` (folded), ``top_terms`` = the five terms that
  contribute most to the cosine with the story's centroid.

Tuning protocol (``newsflow eval stories``; all figures B-cubed F1):
settings are chosen on two dev sets only, the Giveme5W1H tight events with
**odd** event ids and Gedikli's story chains, maximising their mean F1 over a
grid, then reported unchanged on the even event ids (test), all tight events,
all Giveme5W1H and the other sets. Version 3 (2026-11-23): threshold 0.16–0.22,
centroid-vs-member weight 0/0.5/0.7/1, entity terms 0–3, title weight 1–4, lead
boost, time floor 0.6–1 with σ 3–14 days, merge threshold, window 30–3650 days.
Version 4 (2026-12-02) added title weight ``w_title`` 0–0.4 × threshold 0.16–0.20
× re-merge threshold 0/0.20/0.24 (the re-merge's own 12-setting grid of
2026-12-01 chose 0.24, a 7-day gap, ≤ 2 articles and a 730-day reach); ties go to
the setting nearest the previous one. Version 5 (2026-12-02) is a fix, not a
tuning: the dev sets score the same with 0–12 title keys; 3 keep the fix at
about the cost of none, where 10 score 20 % more candidates (the title's rarer
terms are the body's top terms already, unless the body is chrome).
A time-decay grid on version 4 (floor 0.5–1 × σ 2–14 × threshold 0.15–0.19) moved
the dev mean by one or two decisions only, so those settings stay.

Figures, version 3 → 4 → 5 (newsflow; the hindsight-tuned baseline in
brackets): dev odd ids 0.929 → 0.952 → 0.952 (0.944), Gedikli 0.987 → 0.985 →
0.985 (0.973); test even ids 0.942 → 0.962 → 0.968 (0.948); all tight events
0.923 → 0.932 → 0.934 (0.919); all Giveme5W1H 0.901 → 0.919 → 0.921 (0.908);
UCI (2,000 headlines) 0.700 → 0.703 → 0.703 (0.669); WikinewsSum 0.764 → 0.780
→ 0.780 (0.755); WikiRef220 0.506 → 0.615 → 0.615 (0.897; broad topics: an
event clusterer splits them, by design). The target 0.95 on the tight events is
NOT reached (docs/stories.md has the error budget). What limits it: (1)
neighbouring events with the same actors that the dev halves never put side by
side (Tesla-to-Mars and the Falcon Heavy launch, ids 18 and 49; China's oil to
North Korea and Kim's offer of talks, 19 and 34): the whole set scores below both
its halves, and the dev-equivalent threshold 0.18 gave 0.942 there in version 4; (2) crawled pages that are not the article
("NPR Search : NPR", "ABC News", "World news - RT International") with nothing
of the event in them; (3) labels joining different events (a March 2017 airline
story in a December 2017 event).
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime

from newsflow.domain.entities import fold

CLUSTERER_VERSION = "5"


@dataclass(frozen=True)
class Settings:
    """The fixed settings (chosen on the dev sets, see the module docstring); tests and experiments may pass others."""

    threshold: float = 0.17  # join the best story when its score reaches this, else start a new story
    merge_threshold: float = 0.30  # other candidate stories scoring this high are merged into the joined one
    title_rep: int = 2  # title tokens count this many times
    lead_tokens: int = 0  # the first body tokens count once more (0 = off)
    ent_rep: float = 1.0  # weight of each canonical entity as an "@entity" term (0 = off)
    w_centroid: float = 0.7  # similarity = w · cos(story centroid) + (1 − w) · max cos(recent members)
    w_title: float = 0.3  # ... or, if higher, w_title · cos(title, story's title centroid) (0 = off)
    title_terms: int = 100  # terms kept in a story's title centroid
    title_keys: int = 3  # the title's heaviest (rarest) terms also look candidate stories up
    sigma_days: float = 7.0  # time factor = floor + (1 − floor) · exp(−gap² / 2σ²), gap to the story's edges
    time_floor: float = 0.9
    window_days: float = 365.0  # stories idle longer than this (behind the latest article seen) are forgotten
    max_stories: int = 10_000  # and beyond this many live stories, the longest idle ones are forgotten first
    centroid_terms: int = 300  # terms kept in a story's centroid (the heaviest)
    top_terms: int = 20  # an article's top terms: the keys it looks candidate stories up with
    index_terms: int = 40  # a story is indexed under its centroid's heaviest terms, this many
    member_terms: int = 50  # terms kept per member vector
    members: int = 10  # member vectors kept per story: the first and the latest
    # Delayed re-merge of background pieces (0 = off): a small story (at most ``remerge_max_size``
    # articles, its last more than ``remerge_gap_days`` before the story's first) is merged into the
    # story an article joins when cos(centroid(story + article), its centroid) reaches this.
    remerge_threshold: float = 0.24
    remerge_max_size: int = 2
    remerge_gap_days: float = 7.0
    # Small stories leaving the live index (idle past the window, or the longest idle beyond the cap)
    # are archived until their last article is this old (at most ``archive_max``, oldest out first),
    # indexed under their ``archive_terms`` heaviest terms; only the re-merge reads the archive, and
    # only when the joined story reaches a power-of-two size, so it costs O(log size) per story.
    archive_days: float = 730.0
    archive_max: int = 10_000
    archive_terms: int = 10


SETTINGS = Settings()

_TOKEN = re.compile(r"[^\W\d_][\w'’-]+")
_STOP = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "said",
        "same",
        "says",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "one",
        "two",
        "new",
        "year",
        "years",
        "also",
        "like",
        "told",
        "according",
        "mr",
        "ms",
        "mrs",
    ]
)


def _tokens(text: str) -> list[str]:
    return [t for t in (w.casefold() for w in _TOKEN.findall(text)) if t not in _STOP and len(t) > 2]


def terms(title: str | None, text: str) -> Counter[str]:
    tokens = [t.casefold() for t in _TOKEN.findall(f"{title or ''} {title or ''} {text}")]
    return Counter(t for t in tokens if t not in _STOP and len(t) > 2)


@dataclass(frozen=True)
class ArticleInput:
    article_id: str
    title: str | None
    text: str
    entities: tuple[str, ...]
    at: datetime
    language: str


@dataclass(frozen=True)
class Decision:
    article_id: str
    story_id: str
    started: bool
    score: float
    shared_entities: tuple[str, ...]
    top_terms: tuple[str, ...]
    merged: tuple[str, ...] = ()  # stories merged into story_id by this decision, in the order applied
    background: tuple[str, ...] = ()  # those of them merged as older background pieces (the rest were bridged)


@dataclass
class _Story:
    story_id: str
    centroid: dict[str, float] = field(default_factory=dict)
    norm: float = 0.0
    members: list[dict[str, float]] = field(default_factory=list)
    entities: Counter[str] = field(default_factory=Counter)
    first: datetime | None = None
    last: datetime | None = None
    size: int = 0
    keys: set[str] = field(default_factory=set)
    titles: dict[str, float] = field(default_factory=dict)  # sum of the members' unit title vectors
    title_norm: float = 0.0


def _cos(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(t, 0.0) for t, w in a.items())


class OnlineClusterer:
    def __init__(self, settings: Settings = SETTINGS) -> None:
        self.s = settings
        self.df: Counter[str] = Counter()
        self.n_docs = 0
        self.stories: dict[str, _Story] = {}
        self._index: dict[str, set[str]] = {}
        self._clock: datetime | None = None  # latest publication time seen
        self._idle: list[tuple[datetime, str]] = []  # heap of (story last seen, story id); stale entries skipped
        # Small stories that left the live index, kept for the delayed re-merge only.
        self.archive: dict[str, _Story] = {}
        self._archive_index: dict[str, set[str]] = {}
        self._archive_age: list[tuple[datetime, str]] = []  # heap of (last seen, id); entries of merged ones skipped

    def _evict(self) -> None:
        """Forget stories idle for longer than the window (their ids stay valid in the log; they just stop being candidates).

        Small ones move to the archive, where only the re-merge looks for them.
        """
        assert self._clock is not None
        s = self.s
        horizon = self._clock.timestamp() - s.window_days * 86400
        while self._idle and (self._idle[0][0].timestamp() < horizon or len(self.stories) > s.max_stories):
            last, sid = heapq.heappop(self._idle)
            story = self.stories.get(sid)
            if story is None or story.last != last:
                continue
            del self.stories[sid]
            _unindex(self._index, sid, story.keys)
            if s.remerge_threshold > 0 and story.size <= s.remerge_max_size:
                self._archive(story)
        if len(self._idle) > 2 * len(self.stories) + 1024:  # drop stale entries; a sorted list is a heap
            self._idle = sorted((st.last, sid) for sid, st in self.stories.items() if st.last is not None)
        archive_horizon = self._clock.timestamp() - s.archive_days * 86400
        while self._archive_age and (
            self._archive_age[0][0].timestamp() < archive_horizon or len(self.archive) > s.archive_max
        ):
            _, sid = heapq.heappop(self._archive_age)
            if sid in self.archive:
                self._unarchive(sid)

    def _archive(self, story: _Story) -> None:
        story.keys = set(_top(story.centroid, self.s.archive_terms))
        self.archive[story.story_id] = story
        assert story.last is not None
        heapq.heappush(self._archive_age, (story.last, story.story_id))
        _index_under(self._archive_index, story.story_id, story.keys)

    def _unarchive(self, sid: str) -> _Story:
        story = self.archive.pop(sid)
        _unindex(self._archive_index, sid, story.keys)
        story.keys = set()
        return story

    def _take(self, sid: str) -> _Story | None:
        """Remove a story about to be merged from the live stories or the archive."""
        if sid in self.stories:
            return self.stories.pop(sid)
        if sid in self.archive:
            return self._unarchive(sid)
        return None

    def _counts(self, title: list[str], text: str, ents: tuple[str, ...]) -> dict[str, float]:
        s = self.s
        c: dict[str, float] = defaultdict(float)
        body = _tokens(text)
        for t in title:
            c[t] += s.title_rep
        for t in body:
            c[t] += 1
        for t in body[: s.lead_tokens]:
            c[t] += 1
        if s.ent_rep > 0:
            for e in ents:
                c["@" + e] += s.ent_rep
        return c

    def _vector(self, counts: Mapping[str, float]) -> dict[str, float]:
        n = self.n_docs
        vec = {t: (1 + math.log(c)) * (math.log((n + 1) / (self.df[t] + 1)) + 1) for t, c in counts.items() if c > 0}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {t: v / norm for t, v in sorted(vec.items())}

    def _observe(self, a: ArticleInput) -> tuple[tuple[str, ...], dict[str, float], dict[str, float]]:
        """Count the article into the document frequencies; its folded entities, vector and title vector."""
        if self._clock is None or a.at > self._clock:
            self._clock = a.at
        ents = tuple(sorted({k for k in (fold(e) for e in a.entities) if k}))
        title_tokens = _tokens(a.title or "")
        counts = self._counts(title_tokens, a.text, ents)
        self.n_docs += 1
        self.df.update(counts.keys())
        title = self._vector(Counter(title_tokens)) if self.s.w_title > 0 else {}
        return ents, self._vector(counts), title

    def place(self, a: ArticleInput, story_id: str, merged: tuple[str, ...] = ()) -> None:
        """Apply a decision taken earlier (read back from the log) instead of deciding again.

        The state changes exactly as ``add`` changed it when it took that
        decision, so a clusterer rebuilt from recorded decisions continues like
        the one that recorded them, even after its code (version) changed.
        """
        ents, vec, title = self._observe(a)
        if story_id not in self.stories:
            self.stories[story_id] = _Story(story_id)
        story = self.stories[story_id]
        for o in merged:
            other = self._take(o) if o != story_id else None
            if other is not None:
                self._merge(story, other)
        self._join(story, vec, title, ents, a.at)
        self._evict()

    def add(self, a: ArticleInput, new_story_id: str | None = None) -> Decision:
        """Decide the article's story. A story it starts gets ``new_story_id`` (default: the article's id)."""
        s = self.s
        ents, vec, title = self._observe(a)
        top = _top(vec, s.top_terms)
        candidates: set[str] = set()
        for t in top + _top(title, s.title_keys):
            candidates |= self._index.get(t, set())
        scored: list[tuple[float, str]] = []
        for sid in sorted(candidates):
            story = self.stories[sid]
            gap = _days_outside(a.at, story.first, story.last)
            if gap > s.window_days:
                continue
            scored.append((self._score(vec, title, story, gap), sid))
        scored.sort(key=lambda x: (-x[0], x[1]))
        if scored and scored[0][0] >= s.threshold:
            score, sid = scored[0]
            started = False
            story = self.stories[sid]
            why = sorted(
                (t for t in vec if t in story.centroid and not t.startswith("@")),
                key=lambda t: (-vec[t] * story.centroid[t], t),
            )[:5]
            shared = tuple(sorted(set(ents) & set(story.entities)))
            absorb = {o for sc, o in scored[1:] if sc >= s.merge_threshold}
        else:
            score = scored[0][0] if scored else 0.0  # the best story it did not join
            sid, shared, started = new_story_id or a.article_id, (), True
            story = _Story(sid)
            why = [t for t in top if not t.startswith("@")][:5]
            absorb = set()
        background: set[str] = set()
        if s.remerge_threshold > 0 and not started:
            background = self._background(story, vec, a.at, [o for _, o in scored if o != sid and o not in absorb], top)
        merged = tuple(sorted(absorb | background))
        self.stories[sid] = story
        for o in merged:
            other = self._take(o)
            assert other is not None
            self._merge(story, other)
        self._join(story, vec, title, ents, a.at)
        self._evict()
        return Decision(
            a.article_id, sid, started, round(score, 4), shared, tuple(why), merged, tuple(sorted(background))
        )

    def _background(
        self, story: _Story, vec: dict[str, float], at: datetime, live: list[str], top: list[str]
    ) -> set[str]:
        """Small, older stories that the story, with this article in it, shows to be its background.

        Candidates are the live stories already scored for this article and, when the
        story's size is about to become a power of two, archived ones sharing a top term.
        The comparison is story to story (centroids), so an old piece worded unlike any
        single report can still be recognised once the story has a few of them.
        """
        s = self.s
        assert story.first is not None  # a story joined, not started: it has articles
        first = min(story.first, at)
        before = first.timestamp() - s.remerge_gap_days * 86400
        pool = [self.stories[o] for o in live]
        size = story.size + 1
        if self.archive and size & (size - 1) == 0:
            found: set[str] = set()
            for t in top:
                found |= self._archive_index.get(t, set())
            pool += [self.archive[o] for o in sorted(found)]
        pool = [o for o in pool if o.size <= s.remerge_max_size and o.last is not None and o.last.timestamp() < before]
        if not pool:
            return set()
        combined = dict(story.centroid)
        _add(combined, vec)
        norm = math.sqrt(sum(v * v for v in combined.values())) or 1.0
        return {
            o.story_id for o in pool if _cos(combined, o.centroid) / (norm * (o.norm or 1.0)) >= s.remerge_threshold
        }

    def _score(self, vec: dict[str, float], title: dict[str, float], story: _Story, gap_days: float) -> float:
        s = self.s
        sim = _cos(vec, story.centroid) / (story.norm or 1.0)
        if s.w_centroid < 1.0:
            best_member = max(_cos(vec, m) for m in story.members)
            sim = s.w_centroid * sim + (1 - s.w_centroid) * best_member
        if title and story.titles:
            # A page whose body is mostly chrome, a gallery or a digest still has the event in its title.
            sim = max(sim, s.w_title * _cos(title, story.titles) / (story.title_norm or 1.0))
        time_factor = s.time_floor + (1 - s.time_floor) * math.exp(-(gap_days**2) / (2 * s.sigma_days**2))
        return sim * time_factor

    def _join(
        self, story: _Story, vec: dict[str, float], title: dict[str, float], ents: tuple[str, ...], at: datetime
    ) -> None:
        s = self.s
        _add(story.centroid, vec)
        _add(story.titles, title)
        self._trim(story)
        kept = _top(vec, s.member_terms)
        story.members.append({t: vec[t] for t in sorted(kept)})
        if len(story.members) > s.members:
            story.members.pop(1)  # keep the first member and the latest ones
        story.entities.update(ents)
        story.first = at if story.first is None else min(story.first, at)
        if story.last is None or at > story.last:
            story.last = at
            heapq.heappush(self._idle, (at, story.story_id))
        story.size += 1
        self._reindex(story)

    def _reindex(self, story: _Story) -> None:
        """Index the story under its centroid's heaviest terms only.

        A story's keys stay bounded however many articles join it, so a big
        story does not become a candidate for ever more articles.
        """
        keys = set(_top(story.centroid, self.s.index_terms))
        _unindex(self._index, story.story_id, story.keys - keys)
        _index_under(self._index, story.story_id, keys - story.keys)
        story.keys = keys

    def _trim(self, story: _Story) -> None:
        """Keep the heaviest terms of the story's centroids, and their norms up to date."""
        story.centroid = _heaviest(story.centroid, self.s.centroid_terms)
        story.titles = _heaviest(story.titles, self.s.title_terms)
        story.norm = math.sqrt(sum(v * v for v in story.centroid.values()))
        story.title_norm = math.sqrt(sum(v * v for v in story.titles.values()))

    def _merge(self, into: _Story, other: _Story) -> None:
        _add(into.centroid, other.centroid)
        _add(into.titles, other.titles)
        self._trim(into)
        into.members.extend(other.members)
        del into.members[1 : max(1, len(into.members) - self.s.members + 1)]
        into.entities.update(other.entities)
        into.first = min(x for x in (into.first, other.first) if x is not None)
        if other.last is not None and (into.last is None or other.last > into.last):
            into.last = other.last
            heapq.heappush(self._idle, (other.last, into.story_id))
        into.size += other.size
        _unindex(self._index, other.story_id, other.keys)
        self._reindex(into)


def _add(into: dict[str, float], vec: Mapping[str, float]) -> None:
    for t, w in vec.items():
        into[t] = into.get(t, 0.0) + w


def _heaviest(vec: dict[str, float], n: int) -> dict[str, float]:
    if len(vec) <= n:
        return vec
    return {t: vec[t] for t in sorted(_top(vec, n))}


def _top(vec: Mapping[str, float], n: int) -> list[str]:
    """The ``n`` heaviest terms, heaviest first (ties by term, so the order is deterministic)."""
    return [t for t, _ in sorted(vec.items(), key=lambda x: (-x[1], x[0]))[:n]]


def _index_under(index: dict[str, set[str]], sid: str, keys: Iterable[str]) -> None:
    for t in sorted(keys):
        index.setdefault(t, set()).add(sid)


def _unindex(index: dict[str, set[str]], sid: str, keys: Iterable[str]) -> None:
    for t in sorted(keys):
        ids = index[t]
        ids.discard(sid)
        if not ids:
            del index[t]


def follow_merges(merged_into: Mapping[str, str], story: str) -> str:
    """The story that holds ``story``'s articles now: follow the chain of merges to its end."""
    while story in merged_into:
        story = merged_into[story]
    return story


def _days_outside(at: datetime, first: datetime | None, last: datetime | None) -> float:
    if first is None or last is None:
        return 0.0
    if at < first:
        return (first - at).total_seconds() / 86400
    if at > last:
        return (at - last).total_seconds() / 86400
    return 0.0


def describe_settings() -> dict[str, float | int]:
    return asdict(SETTINGS)


def cluster(articles: Iterable[ArticleInput], settings: Settings = SETTINGS) -> list[Decision]:
    """Convenience: a fresh clusterer over a whole sequence."""
    clusterer = OnlineClusterer(settings)
    return [clusterer.add(a) for a in articles]
