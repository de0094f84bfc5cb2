"""Online story clustering: each article joins the best-matching recent story or starts a new one.

Pure (no I/O) and deterministic: the same articles in the same order give the same
decisions; nothing depends on set or dict order, randomness or the wall clock. The
whole state is plain data, so ``pickle`` snapshots it; restored and continued equals
uninterrupted (tests/unit/test_clustering.py).

An article is a tf-idf vector over its title, body and canonical entities (idf
learned online) and, when its log has one, the dense vector the stage workers recorded
(``ArticleEmbedded``), compared with the story's mean vector once each language's mean is
taken out: that is how a report in another language can join. Its candidate stories come
from an inverted index of each story's heaviest centroid terms, looked up with the
article's own top terms and its title's rarest terms. It joins the best candidate whose
score (centroid, member and title cosines, plus the dense term, times a time factor)
reaches ``threshold``, bridges others above ``merge_threshold``, and may pull in small,
much older stories as background. The score, each setting, its version history and how
the settings were chosen (on dev sets only) are in docs/stories.md.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from newsflow.domain import story_terms
from newsflow.domain.clusterer_settings import SETTINGS, ClustererSettings
from newsflow.domain.entities import fold


@dataclass(frozen=True)
class ArticleInput:
    article_id: str
    title: str | None
    text: str
    entities: tuple[str, ...]
    at: datetime
    language: str
    vector: tuple[float, ...] | None = None  # the unit vector of ArticleEmbedded, when the log has one


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
    # Sum of the members' unit dense vectors (None: no member had one) and the members' languages.
    # Defaults on the class: a story pickled before these fields existed reads them as None.
    dense: np.ndarray | None = None
    languages: frozenset[str] | None = None


def _cos(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(t, 0.0) for t, w in a.items())


class OnlineClusterer:
    def __init__(self, settings: ClustererSettings = SETTINGS) -> None:
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
        self._language_sums: dict[str, tuple[np.ndarray, int]] = {}  # sum and count of the raw vectors

    def __setstate__(self, state: dict[str, object]) -> None:
        """A snapshot taken before the dense signal existed restores with no language means yet."""
        self.__dict__.update(state)
        self.__dict__.setdefault("_language_sums", {})

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
        body = story_terms.tokens(text)
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

    def _centered(self, vector: tuple[float, ...], language: str) -> np.ndarray | None:
        """The article's dense vector minus its language's mean (shrunk towards zero while few are seen), as a unit vector.

        Texts in one language share a direction whatever they say; removing it leaves what
        they are about, which is what a report in another language can share.
        """
        raw = np.asarray(vector)
        total, count = self._language_sums.get(language, (np.zeros(len(raw)), 0))
        total, count = total + raw, count + 1
        self._language_sums[language] = (total, count)
        centered = raw - total / (count + self.s.center_shrink)
        norm = float(np.linalg.norm(centered))
        return centered / norm if norm > 0 else None

    def _observe(
        self, a: ArticleInput
    ) -> tuple[tuple[str, ...], dict[str, float], dict[str, float], np.ndarray | None]:
        """Count the article into the document frequencies; its folded entities, vector, title vector and dense vector."""
        if self._clock is None or a.at > self._clock:
            self._clock = a.at
        ents = tuple(sorted({k for k in (fold(e) for e in a.entities) if k}))
        title_tokens = story_terms.tokens(a.title or "")
        counts = self._counts(title_tokens, a.text, ents)
        self.n_docs += 1
        self.df.update(counts.keys())
        title = self._vector(Counter(title_tokens)) if self.s.w_title > 0 else {}
        dense = self._centered(a.vector, a.language) if a.vector is not None else None
        return ents, self._vector(counts), title, dense

    def place(self, a: ArticleInput, story_id: str, merged: tuple[str, ...] = ()) -> None:
        """Apply a decision taken earlier (read back from the log) instead of deciding again.

        The state changes exactly as ``add`` changed it when it took that
        decision, so a clusterer rebuilt from recorded decisions continues like
        the one that recorded them, even after its code (version) changed.
        """
        ents, vec, title, dense = self._observe(a)
        if story_id not in self.stories:
            self.stories[story_id] = _Story(story_id)
        story = self.stories[story_id]
        for o in merged:
            other = self._take(o) if o != story_id else None
            if other is not None:
                self._merge(story, other)
        self._join(story, vec, title, ents, dense, a)
        self._evict()

    def add(self, a: ArticleInput, new_story_id: str | None = None) -> Decision:
        """Decide the article's story. A story it starts gets ``new_story_id`` (default: the article's id)."""
        s = self.s
        ents, vec, title, dense = self._observe(a)
        top = _top(vec, s.top_terms)
        candidates: set[str] = set()
        for t in top + _top(title, s.title_keys):
            candidates |= self._index.get(t, set())
        use_dense = s.w_dense > 0 or s.cross_threshold > 0
        scored: list[tuple[float, str]] = []
        for sid in sorted(candidates):
            story = self.stories[sid]
            gap = _days_outside(a.at, story.first, story.last)
            if gap > s.window_days:
                continue
            scored.append((self._score(vec, title, dense if use_dense else None, a.language, story, gap), sid))
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
        self._join(story, vec, title, ents, dense, a)
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

    def _score(
        self,
        vec: dict[str, float],
        title: dict[str, float],
        dense: np.ndarray | None,
        language: str,
        story: _Story,
        gap_days: float,
    ) -> float:
        s = self.s
        sim = _cos(vec, story.centroid) / (story.norm or 1.0)
        if s.w_centroid < 1.0:
            best_member = max(_cos(vec, m) for m in story.members)
            sim = s.w_centroid * sim + (1 - s.w_centroid) * best_member
        if title and story.titles:
            # A page whose body is mostly chrome, a gallery or a digest still has the event in its title.
            sim = max(sim, s.w_title * _cos(title, story.titles) / (story.title_norm or 1.0))
        if dense is not None and story.dense is not None:
            sim = self._with_dense(
                sim, float(dense @ story.dense) / (float(np.linalg.norm(story.dense)) or 1.0), language, story
            )
        time_factor = s.time_floor + (1 - s.time_floor) * math.exp(-(gap_days**2) / (2 * s.sigma_days**2))
        return sim * time_factor

    def _with_dense(self, sim: float, cos: float, language: str, story: _Story) -> float:
        """The term similarity with the dense cosine added; in another language, the dense path alone may join.

        ``w_dense · (cos − dense_center)``: unrelated reports still have a positive cosine, so
        only what exceeds ``dense_center`` raises the score (less lowers it). An article in a
        language none of the story's members has shares few terms with it: there a cosine of
        ``cross_threshold`` is worth the join threshold, and more is worth more.
        """
        s = self.s
        sim += s.w_dense * (cos - s.dense_center)
        if s.cross_threshold > 0 and story.languages and language not in story.languages:
            sim = max(sim, s.threshold + cos - s.cross_threshold)
        return sim

    def _join(
        self,
        story: _Story,
        vec: dict[str, float],
        title: dict[str, float],
        ents: tuple[str, ...],
        dense: np.ndarray | None,
        a: ArticleInput,
    ) -> None:
        s = self.s
        at = a.at
        if dense is not None:
            story.dense = dense if story.dense is None else story.dense + dense
        story.languages = frozenset({*(story.languages or ()), a.language})
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
        if other.dense is not None:
            into.dense = other.dense if into.dense is None else into.dense + other.dense
        into.languages = frozenset({*(into.languages or ()), *(other.languages or ())})
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


def cluster(articles: Iterable[ArticleInput], settings: ClustererSettings = SETTINGS) -> list[Decision]:
    """Convenience: a fresh clusterer over a whole sequence."""
    clusterer = OnlineClusterer(settings)
    return [clusterer.add(a) for a in articles]
