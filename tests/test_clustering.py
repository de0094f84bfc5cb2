"""Story clustering pieces that are already fixed: the B-cubed score and the clusterer's determinism."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from newsflow.domain import clustering
from newsflow.evaluation.stories import bcubed


def test_bcubed_scores_known_cases() -> None:
    gold = ["a", "a", "b", "b"]
    assert bcubed(["x", "x", "y", "y"], gold) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    one = bcubed(["x", "x", "x", "x"], gold)
    assert (one["precision"], one["recall"]) == (0.5, 1.0)
    singletons = bcubed(["1", "2", "3", "4"], gold)
    assert (singletons["precision"], singletons["recall"]) == (1.0, 0.5)


def test_same_stream_gives_same_stories_and_related_articles_join() -> None:
    t0 = datetime(2022, 9, 15, tzinfo=UTC)
    texts = [
        ("Putin and Xi meet in Samarkand", "Putin and Xi met in Samarkand at the summit of the organization."),
        ("Xi meets Putin at Samarkand summit", "In Samarkand Xi met Putin; the summit of the organization went on."),
        ("Port strike ends", "Dock workers ended their strike at the port after a wage deal with employers."),
    ]
    features = [
        clustering.ArticleFeatures(str(i), clustering.terms(t, b), frozenset(), t0 + timedelta(hours=i))
        for i, (t, b) in enumerate(texts)
    ]
    first, second = clustering.cluster(features), clustering.cluster(features)
    assert first == second
    assert first[0].started and not first[1].started and first[1].story_id == first[0].story_id
    assert first[2].started
