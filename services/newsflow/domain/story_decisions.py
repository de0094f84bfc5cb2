"""The clusterer's decisions as event payloads: a story started, stories merged, an article assigned."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from newsflow.domain.clusterer_settings import CLUSTERER_VERSION
from newsflow.domain.clustering import Decision
from newsflow.domain.entities import fold
from newsflow.domain.events import ArticleAssignedToStory, EventPayload, MergeReason, StoriesMerged, StoryStarted


def duplicate_assigned(
    story_id: uuid.UUID, article_id: uuid.UUID, duplicate_of: uuid.UUID, similarity: float
) -> ArticleAssignedToStory:
    """A duplicate follows its canonical article's story, scored by the dedup similarity, not clustered."""
    return ArticleAssignedToStory(
        story_id=story_id,
        clusterer_version=CLUSTERER_VERSION,
        article_id=article_id,
        role="duplicate",
        started=False,
        score=round(similarity, 4),
        shared_entities=[],
        top_terms=[],
        duplicate_of=duplicate_of,
    )


def decision_payloads(article_id: uuid.UUID, decision: Decision, entity_names: Sequence[str]) -> list[EventPayload]:
    """What one canonical article's decision records, in order; all go to the story's stream."""
    sid = uuid.UUID(decision.story_id)
    out: list[EventPayload] = []
    if decision.started:
        out.append(
            StoryStarted(
                story_id=sid,
                clusterer_version=CLUSTERER_VERSION,
                article_id=article_id,
                best_score=decision.score,
                top_terms=list(decision.top_terms),
            )
        )
    by_reason: list[tuple[MergeReason, list[str]]] = [
        ("bridge", [m for m in decision.merged if m not in decision.background]),
        ("background", list(decision.background)),
    ]
    for reason, ids in by_reason:
        if ids:
            out.append(
                StoriesMerged(
                    story_id=sid,
                    clusterer_version=CLUSTERER_VERSION,
                    merged_story_ids=[uuid.UUID(m) for m in ids],
                    bridging_article_id=article_id,
                    reason=reason,
                )
            )
    out.append(
        ArticleAssignedToStory(
            story_id=sid,
            clusterer_version=CLUSTERER_VERSION,
            article_id=article_id,
            role="canonical",
            started=decision.started,
            score=decision.score,
            shared_entities=display_names(decision.shared_entities, entity_names),
            top_terms=list(decision.top_terms),
        )
    )
    return out


def display_names(shared: Sequence[str], names: Sequence[str]) -> list[str]:
    """The article's own spelling of the entities the clusterer matched (it may compare folded names)."""
    spelled = {fold(n): n for n in names}
    return [spelled.get(fold(s), s) for s in shared]
