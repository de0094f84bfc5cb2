"""Per-source chrome learned from the stream: a line that recurs across a source's articles is not news.

A site's footer, tagline or newsletter pitch changes rarely and no rule list
can know every one. Each cleaned article reports the hashes of its short lines
(``chrome_candidates``, see newsflow.domain.cleaning.cleaner); a hash seen in
``MIN_ARTICLES`` distinct articles of the same source is chrome for that
source from then on. Counts only grow, so a new footer is learned after
``MIN_ARTICLES`` articles carry it while the old one stays known.

The state is a fold over ArticleCleaned events (the first one of each article
stream: a revision of an article is not a distinct article), kept in
PostgreSQL in the same transaction as the events it counts, and rebuildable
from the log (``newsflow chrome rebuild``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

MIN_ARTICLES = 5


def increments(articles: Iterable[tuple[str, Sequence[str]]]) -> Counter[tuple[str, str]]:
    """How much each (source, line hash) count grows for these newly seen articles."""
    counts: Counter[tuple[str, str]] = Counter()
    for source, hashes in articles:
        for line_hash in set(hashes):
            counts[(source, line_hash)] += 1
    return counts


class LearnedChrome:
    """The learned lines per source, as one process knows them, with the sequence number it has read up to."""

    def __init__(self) -> None:
        self._by_source: dict[str, set[str]] = {}
        self.last_seq = 0

    def add(self, source: str, line_hash: str, seq: int) -> None:
        self._by_source.setdefault(source, set()).add(line_hash)
        self.last_seq = max(self.last_seq, seq)

    def for_source(self, source: str) -> frozenset[str]:
        return frozenset(self._by_source.get(source, ()))

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_source.values())
