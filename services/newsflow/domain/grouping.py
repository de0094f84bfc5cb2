"""Naive story grouping used by the first story projection.

An article's key terms are the distinct content words of its title and lead.
It joins the candidate story whose terms overlap most, when the overlap
coefficient |A∩B| / min(|A|,|B|) reaches ``JOIN_THRESHOLD``; otherwise it starts
a story. Deterministic for a given order of articles, which is what makes the
projection rebuildable. The online clusterer (TF-IDF, entities, time decay)
replaces this.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

GROUPING_VERSION = "naive-terms-1"
JOIN_THRESHOLD = 0.3
LEAD_WORDS = 60
MAX_STORY_TERMS = 200

_WORD = re.compile(r"[^\W\d_][\w'’-]{3,}", re.UNICODE)
_STOP = frozenset(
    """
    that this with from have were been their they them will would said says about after before since while
    which where when what there these those into over under than then also more most other some such only
    very just being does during against between first last year years week weeks today thursday friday
    monday tuesday wednesday saturday sunday news online reply comments post posts share related
    """.split()
)


def key_terms(title: str | None, text: str) -> list[str]:
    lead = " ".join(text.split()[:LEAD_WORDS])
    seen: dict[str, None] = {}
    for word in _WORD.findall(f"{title or ''} {lead}"):
        w = word.casefold().strip("'’-")
        if len(w) >= 4 and w not in _STOP:
            seen.setdefault(w, None)
    return list(seen)


@dataclass(frozen=True)
class Candidate:
    story_id: str
    terms: Sequence[str]


def overlap(a: Iterable[str], b: Iterable[str]) -> float:
    sa, sb = set(a), set(b)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / min(len(sa), len(sb))


def choose_story(terms: Sequence[str], candidates: Iterable[Candidate]) -> tuple[str | None, float]:
    """Best candidate story and its score, or (None, best score) when none reaches the threshold.

    Ties go to the lexicographically smallest story id so the choice never depends on row order.
    """
    best: tuple[float, str] | None = None
    for cand in candidates:
        score = overlap(terms, cand.terms)
        if best is None or score > best[0] or (score == best[0] and cand.story_id < best[1]):
            best = (score, cand.story_id)
    if best is None:
        return None, 0.0
    return (best[1] if best[0] >= JOIN_THRESHOLD else None), best[0]


def merge_terms(existing: Sequence[str], new: Sequence[str]) -> list[str]:
    merged = dict.fromkeys(existing)
    for term in new:
        if len(merged) >= MAX_STORY_TERMS:
            break
        merged.setdefault(term, None)
    return list(merged)
