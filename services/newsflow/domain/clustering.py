"""Online story clustering: each article joins the best-matching recent story or starts a new one.

Pure (no I/O) and deterministic: the same articles in the same order give the same
decisions; nothing depends on set or dict order, randomness or the wall clock. The
whole state is plain data, so ``pickle`` snapshots it; restored and continued equals
uninterrupted (tests/test_clustering.py).

Algorithm (version 3; version 2 indexed a story under the top terms of every
member it ever had, so big stories became candidates for ever more articles and
the cost per article grew with the stream; version 3 bounds the keys, with the
same scores on every evaluation set):

- Vector: sublinear-tf · idf over the title (tokens counted ``title_rep`` times),
  the body, and the article's canonical entities folded into ``@entity`` terms
  (weight ``ent_rep``); idf is learned online from every article seen so far
  (``df`` Counter), nothing bundled. Unit length.
- Candidates: an inverted index from each story's ``index_terms`` heaviest
  centroid terms (entity terms included) to the story, re-keyed as the centroid
  changes; an article looks up its own ``top_terms``. Stories
  idle for more than ``window_days`` behind the newest article seen, and beyond
  ``max_stories`` live stories the longest idle ones, are evicted from the index
  and from memory; centroids keep their ``centroid_terms`` heaviest terms. So
  memory is bounded and the cost per article depends on how many live stories
  share its top terms, not on how many stories have existed.
- Score against a candidate story:
  ``(w · cos(article, centroid) + (1 − w) · max cos(article, member)) · time factor``
  where members are the story's first and latest ``members`` articles (top
  ``member_terms`` terms each) and the time factor is
  ``floor + (1 − floor) · exp(−gap² / 2σ²)``, gap = days outside the story's span.
- Decision: the best story if its score ≥ ``threshold``, else a new story whose id
  is the article's id (its ``score`` is then the best score it did not reach).
  Any other candidate scoring ≥ ``merge_threshold`` is merged into the joined story
  (``Decision.merged``): the article bridges them.
- Reasons: ``shared_entities`` (folded), ``top_terms`` = the five terms that
  contribute most to the cosine with the story's centroid.

Tuning protocol (``newsflow eval stories``; all figures B-cubed F1, 2026-11-23):
settings were chosen on two dev sets only, the Giveme5W1H tight events with
**odd** event ids and Gedikli's story chains, maximising their mean F1 over a
grid (threshold 0.16–0.22 / 0.15–0.35, centroid-vs-member weight 0/0.5/0.7/1,
entity terms 0–3, title weight 1–4, lead boost, time floor 0.6–1 with σ 3–14 days,
merge threshold, window 30–3650 days). Then reported, unchanged, on the even
event ids (test), all tight events, all Giveme5W1H and the other sets.

Figures with these settings (newsflow vs the baseline with its threshold chosen
in hindsight per set): dev odd ids 0.929 vs 0.944, Gedikli 0.987 vs 0.973 (dev);
test even ids 0.942 vs 0.948; all tight events 0.923 vs 0.919; all Giveme5W1H
0.901 vs 0.908; UCI (2,000 headlines) 0.700 vs 0.669; WikinewsSum 0.764 vs 0.755;
WikiRef220 0.506 vs 0.897 (broad topics: an event clusterer splits them, by design).
The TF-IDF family saturates near the hindsight-tuned baseline; the target 0.95 on
the tight events is NOT reached. What limits it: (1) about 20 tight events include
a background article weeks to months older than the event (an Oct 2017
Tiangong-1 piece, a March 2017 airline story in a Dec 2017 event) whose vocabulary
differs from the reports; a 30-day window costs 0.014 more (0.908), hence 365 days
with a live-story cap; (2) crawler pages that are not the article ("NPR Search :
NPR", "ABC News", "World news - RT International"); (3) near events sharing
vocabulary (two bitcoin price events, two SpaceX launches). Entity terms help on
Gedikli (+0.015) and are neutral on Giveme5W1H; the max-member similarity helps
recall a little; strong time decay (floor 0.6) helps Gedikli but hurts Giveme5W1H
(background articles), so the decay is mild; merges fire on UCI and once on Gedikli.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime

from newsflow.domain.entities import fold

CLUSTERER_VERSION = "3"


@dataclass(frozen=True)
class Settings:
    """The fixed settings (chosen on the dev sets, see the module docstring); tests and experiments may pass others."""

    threshold: float = 0.18        # join the best story when its score reaches this, else start a new story
    merge_threshold: float = 0.30  # other candidate stories scoring this high are merged into the joined one
    title_rep: int = 2             # title tokens count this many times
    lead_tokens: int = 0           # the first body tokens count once more (0 = off)
    ent_rep: float = 1.0           # weight of each canonical entity as an "@entity" term (0 = off)
    w_centroid: float = 0.7        # similarity = w · cos(story centroid) + (1 − w) · max cos(recent members)
    sigma_days: float = 7.0        # time factor = floor + (1 − floor) · exp(−gap² / 2σ²), gap to the story's edges
    time_floor: float = 0.9
    window_days: float = 365.0     # stories idle longer than this (behind the latest article seen) are forgotten
    max_stories: int = 10_000      # and beyond this many live stories, the longest idle ones are forgotten first
    centroid_terms: int = 300      # terms kept in a story's centroid (the heaviest)
    top_terms: int = 20            # an article's top terms: the keys it looks candidate stories up with
    index_terms: int = 40          # a story is indexed under its centroid's heaviest terms, this many
    member_terms: int = 50         # terms kept per member vector
    members: int = 10              # member vectors kept per story: the first and the latest


SETTINGS = Settings()

_TOKEN = re.compile(r"[^\W\d_][\w'’-]+")
_STOP = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having he
    her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor
    not now of off on once only or other our ours ourselves out over own said same says she should so some such
    than that the their theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours yourself
    yourselves one two new year years also like told according mr ms mrs""".split()
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
    merged: tuple[str, ...] = ()


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

    def _evict(self) -> None:
        """Forget stories idle for longer than the window (their ids stay valid in the log; they just stop being candidates)."""
        assert self._clock is not None
        horizon = self._clock.timestamp() - self.s.window_days * 86400
        while self._idle and (self._idle[0][0].timestamp() < horizon or len(self.stories) > self.s.max_stories):
            last, sid = heapq.heappop(self._idle)
            story = self.stories.get(sid)
            if story is None or story.last != last:
                continue
            del self.stories[sid]
            for t in sorted(story.keys):
                ids = self._index[t]
                ids.discard(sid)
                if not ids:
                    del self._index[t]
        if len(self._idle) > 2 * len(self.stories) + 1024:  # drop stale entries; a sorted list is a heap
            self._idle = sorted((st.last, sid) for sid, st in self.stories.items() if st.last is not None)

    def _counts(self, a: ArticleInput, ents: tuple[str, ...]) -> Counter[str]:
        s = self.s
        c: Counter[str] = Counter()
        title = _tokens(a.title or "")
        body = _tokens(a.text)
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

    def _vector(self, counts: Counter[str]) -> dict[str, float]:
        n = self.n_docs
        vec = {t: (1 + math.log(c)) * (math.log((n + 1) / (self.df[t] + 1)) + 1) for t, c in counts.items() if c > 0}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {t: v / norm for t, v in sorted(vec.items())}

    def _observe(self, a: ArticleInput) -> tuple[tuple[str, ...], dict[str, float]]:
        """Count the article into the document frequencies; its folded entities and vector."""
        if self._clock is None or a.at > self._clock:
            self._clock = a.at
        ents = tuple(sorted({k for k in (fold(e) for e in a.entities) if k}))
        counts = self._counts(a, ents)
        self.n_docs += 1
        self.df.update(counts.keys())
        return ents, self._vector(counts)

    def place(self, a: ArticleInput, story_id: str, merged: tuple[str, ...] = ()) -> None:
        """Apply a decision taken earlier (read back from the log) instead of deciding again.

        The state changes exactly as ``add`` changed it when it took that
        decision, so a clusterer rebuilt from recorded decisions continues like
        the one that recorded them, even after its code (version) changed.
        """
        ents, vec = self._observe(a)
        if story_id not in self.stories:
            self.stories[story_id] = _Story(story_id)
        story = self.stories[story_id]
        for o in merged:
            if o in self.stories and o != story_id:
                self._merge(story, self.stories.pop(o))
        self._join(story, vec, ents, a.at)
        self._evict()

    def add(self, a: ArticleInput, new_story_id: str | None = None) -> Decision:
        """Decide the article's story. A story it starts gets ``new_story_id`` (default: the article's id)."""
        s = self.s
        ents, vec = self._observe(a)
        top = sorted(vec, key=lambda t: (-vec[t], t))[: s.top_terms]
        candidates: set[str] = set()
        for t in top:
            candidates |= self._index.get(t, set())
        scored: list[tuple[float, str]] = []
        for sid in sorted(candidates):
            story = self.stories[sid]
            gap = _days_outside(a.at, story.first, story.last)
            if gap > s.window_days:
                continue
            scored.append((self._score(vec, story, gap), sid))
        scored.sort(key=lambda x: (-x[0], x[1]))
        merged: tuple[str, ...] = ()
        if scored and scored[0][0] >= s.threshold:
            score, sid = scored[0]
            started = False
            story = self.stories[sid]
            why = sorted((t for t in vec if t in story.centroid and not t.startswith("@")),
                         key=lambda t: (-vec[t] * story.centroid[t], t))[:5]
            shared = tuple(sorted(set(ents) & set(story.entities)))
            absorb = tuple(sorted(o for sc, o in scored[1:] if sc >= s.merge_threshold))
            if absorb:
                merged = absorb
                for o in absorb:
                    self._merge(story, self.stories.pop(o))
        else:
            score = scored[0][0] if scored else 0.0  # the best story it did not join
            sid, shared, started = new_story_id or a.article_id, (), True
            self.stories[sid] = _Story(sid)
            why = [t for t in top if not t.startswith("@")][:5]
        self._join(self.stories[sid], vec, ents, a.at)
        self._evict()
        return Decision(a.article_id, sid, started, round(score, 4), shared, tuple(why), merged)

    def _score(self, vec: dict[str, float], story: _Story, gap_days: float) -> float:
        s = self.s
        sim = _cos(vec, story.centroid) / (story.norm or 1.0)
        if s.w_centroid < 1.0:
            best_member = max(_cos(vec, m) for m in story.members)
            sim = s.w_centroid * sim + (1 - s.w_centroid) * best_member
        time_factor = s.time_floor + (1 - s.time_floor) * math.exp(-(gap_days**2) / (2 * s.sigma_days**2))
        return sim * time_factor

    def _join(self, story: _Story, vec: dict[str, float], ents: tuple[str, ...], at: datetime) -> None:
        s = self.s
        c = story.centroid
        for t, w in vec.items():
            c[t] = c.get(t, 0.0) + w
        self._trim(story)
        story.norm = math.sqrt(sum(v * v for v in c.values()))
        kept = sorted(vec, key=lambda t: (-vec[t], t))[: s.member_terms]
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
        keys = {t for t, _ in sorted(story.centroid.items(), key=lambda x: (-x[1], x[0]))[: self.s.index_terms]}
        for t in sorted(story.keys - keys):
            ids = self._index[t]
            ids.discard(story.story_id)
            if not ids:
                del self._index[t]
        for t in sorted(keys - story.keys):
            self._index.setdefault(t, set()).add(story.story_id)
        story.keys = keys

    def _trim(self, story: _Story) -> None:
        if len(story.centroid) > self.s.centroid_terms:
            kept = sorted(story.centroid.items(), key=lambda x: (-x[1], x[0]))[: self.s.centroid_terms]
            story.centroid = dict(sorted(kept))

    def _merge(self, into: _Story, other: _Story) -> None:
        for t, w in other.centroid.items():
            into.centroid[t] = into.centroid.get(t, 0.0) + w
        self._trim(into)
        into.norm = math.sqrt(sum(v * v for v in into.centroid.values()))
        into.members.extend(other.members)
        del into.members[1 : max(1, len(into.members) - self.s.members + 1)]
        into.entities.update(other.entities)
        into.first = min(x for x in (into.first, other.first) if x is not None)
        if other.last is not None and (into.last is None or other.last > into.last):
            into.last = other.last
            heapq.heappush(self._idle, (other.last, into.story_id))
        into.size += other.size
        for t in sorted(other.keys):
            ids = self._index[t]
            ids.discard(other.story_id)
            if not ids:
                del self._index[t]
        self._reindex(into)


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
