"""What a delivered article adds to the log: a first version, a revision, or nothing (a redelivery).

A URL is one article. The same content delivered again (a scraper re-sending,
a producer retrying) adds no events; changed content under the same URL is a
new version, announced by ``ArticleRevised`` before the stages' events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from newsflow.domain.events import ArticleEntitiesExtracted, ArticleRevised, NewEvent
from newsflow.domain.stages import Accepted, caused_by


@dataclass(frozen=True)
class StoredVersion:
    content_sha256: str
    revision: int


@dataclass(frozen=True)
class Verdict:
    kind: Literal["new", "revision", "redelivery"]
    revision: int
    previous_sha256: str | None = None


class VersionLedger:
    """The latest version of each article, as stored and as decided so far in one transaction.

    One batch can carry the same URL more than once; each delivery is judged
    against the one decided before it.
    """

    def __init__(self, stored: Mapping[str, StoredVersion]) -> None:
        self._latest = dict(stored)

    def judge(self, stream_id: str, content_sha256: str) -> Verdict:
        known = self._latest.get(stream_id)
        if known is None:
            verdict = Verdict("new", 1)
        elif known.content_sha256 == content_sha256:
            return Verdict("redelivery", known.revision)
        else:
            verdict = Verdict("revision", known.revision + 1, known.content_sha256)
        self._latest[stream_id] = StoredVersion(content_sha256, verdict.revision)
        return verdict


def version_events(o: Accepted, verdict: Verdict, dedup_events: Sequence[NewEvent]) -> list[NewEvent]:
    """The events of one new article version, ``ArticleEntitiesExtracted`` last.

    That event closes the version: the story clusterer acts on it, and by then
    the log already holds the duplicate verdict, so a duplicate follows its
    canonical article instead of being clustered on its own.
    """
    if verdict.kind == "redelivery":
        return []
    events = list(o.events)
    if verdict.kind == "revision":
        assert verdict.previous_sha256 is not None
        received, *rest = events
        revised = ArticleRevised(
            article_id=o.article_id,
            revision=verdict.revision,
            previous_content_sha256=verdict.previous_sha256,
            content_sha256=o.content_sha256,
        )
        events = [received, NewEvent.of(o.stream_id, revised, caused_by(received.event_id)), *rest]
    closing = ArticleEntitiesExtracted.event_type
    return [*(e for e in events if e.type != closing), *dedup_events, *(e for e in events if e.type == closing)]
