"""Story clustering: the B-cubed score, the clusterer's determinism, snapshots, and the seed story (pure domain, no database)."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newsflow.domain import clustering, entities
from newsflow.domain.cleaner import Cleaned, clean_article
from newsflow.domain.contract import RawArticleV1
from newsflow.evaluation.stories import bcubed, pairwise

SEEDS = Path(__file__).parent / "fixtures" / "seeds"
T0 = datetime(2022, 9, 15, tzinfo=UTC)


def test_bcubed_scores_known_cases() -> None:
    gold = ["a", "a", "b", "b"]
    assert bcubed(["x", "x", "y", "y"], gold) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    one = bcubed(["x", "x", "x", "x"], gold)
    assert (one["precision"], one["recall"]) == (0.5, 1.0)
    singletons = bcubed(["1", "2", "3", "4"], gold)
    assert (singletons["precision"], singletons["recall"]) == (1.0, 0.5)


def test_pairwise_scores_labelled_pairs() -> None:
    pairs = [(0, 1, True), (0, 2, False), (1, 2, False)]
    assert pairwise(["x", "x", "y"], pairs) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert pairwise(["x", "x", "x"], pairs)["precision"] == round(1 / 3, 4)


def _article(i: int, title: str, body: str, hours: float = 0.0, ents: tuple[str, ...] = ()) -> clustering.ArticleInput:
    return clustering.ArticleInput(f"a{i}", title, body, ents, T0 + timedelta(hours=hours), "en")


def _toy() -> list[clustering.ArticleInput]:
    texts = [
        ("Putin and Xi meet in Samarkand", "Putin and Xi met in Samarkand at the summit of the organization.", ("Vladimir Putin", "Xi Jinping")),
        ("Xi meets Putin at Samarkand summit", "In Samarkand Xi met Putin; the summit of the organization went on.", ("Xi Jinping",)),
        ("Port strike ends", "Dock workers ended their strike at the port after a wage deal with employers.", ()),
        ("Dock strike over at port", "The port strike by dock workers is over after employers agreed a wage deal.", ()),
        ("Samarkand summit closes", "Leaders left Samarkand as the summit of the organization closed; Putin and Xi spoke.", ("Samarkand",)),
    ]
    return [_article(i, t, b, i, e) for i, (t, b, e) in enumerate(texts)]


def test_same_stream_gives_same_stories_and_related_articles_join() -> None:
    first, second = clustering.cluster(_toy()), clustering.cluster(_toy())
    assert first == second
    assert first[0].started and not first[1].started and first[1].story_id == first[0].story_id
    assert first[2].started and first[2].story_id == "a2"
    assert first[3].story_id == "a2" and first[4].story_id == "a0"
    joined = first[1]
    assert joined.shared_entities == ("xi jinping",)
    assert "samarkand" in joined.top_terms and len(joined.top_terms) <= 5
    assert all(d.merged == () for d in first)
    assert all(isinstance(d.score, float) and d.score == round(d.score, 4) for d in first)


def test_snapshot_restored_and_continued_equals_uninterrupted() -> None:
    stream = _toy()
    uninterrupted = clustering.cluster(stream)
    for cut in range(len(stream) + 1):
        c = clustering.OnlineClusterer()
        before = [c.add(a) for a in stream[:cut]]
        restored = pickle.loads(pickle.dumps(c))
        after = [restored.add(a) for a in stream[cut:]]
        assert before + after == uninterrupted


def test_snapshot_bytes_are_deterministic() -> None:
    a, b = clustering.OnlineClusterer(), clustering.OnlineClusterer()
    for x in _toy():
        a.add(x)
        b.add(x)
    assert pickle.dumps(a) == pickle.dumps(b)


def test_idle_stories_are_evicted_from_the_candidate_index() -> None:
    c = clustering.OnlineClusterer()
    c.add(_article(0, "Port strike ends", "Dock workers ended their strike at the port after a wage deal."))
    later = clustering.SETTINGS.window_days * 24 + 48
    d = c.add(_article(1, "Port strike ends", "Dock workers ended their strike at the port after a wage deal.", later))
    assert d.started
    assert "a0" not in c.stories and all("a0" not in ids for ids in c._index.values())


def test_an_article_bridging_two_stories_merges_them() -> None:
    c = clustering.OnlineClusterer()
    a = c.add(_article(0, "Volcano erupts on Etna island", "Lava from the Etna volcano reached villages near Catania."))
    b = c.add(_article(1, "Ash cloud grounds flights in Sicily", "Airlines cancelled flights at Catania airport because of an ash cloud."))
    assert b.started
    bridge = c.add(_article(2, "Etna volcano ash cloud grounds Catania flights",
                            "The Etna volcano eruption sent lava to villages and an ash cloud closed Catania airport; airlines cancelled flights."))
    assert not bridge.started
    assert set(bridge.merged + (bridge.story_id,)) == {a.story_id, b.story_id}
    assert len(c.stories) == 1


def _seed_inputs() -> list[clustering.ArticleInput]:
    manifest = json.loads((SEEDS / "manifest.json").read_text(encoding="utf-8"))["files"]
    out = []
    for name, meta in manifest.items():
        msg = RawArticleV1.model_validate({**meta, "text": (SEEDS / name).read_text(encoding="utf-8")})
        cleaned = clean_article(msg)
        assert isinstance(cleaned, Cleaned)
        found = entities.extract(cleaned.text, "en").entities
        out.append(clustering.ArticleInput(name, cleaned.title, cleaned.text, tuple(e["name"] for e in found),
                                           msg.published_at or msg.fetched_at, "en"))
    return sorted(out, key=lambda a: (a.at, a.article_id))


UNRELATED = clustering.ArticleInput(
    "unrelated",
    "Dock workers end strike at Rotterdam port",
    "Dock workers at the port of Rotterdam ended a three-day strike on Thursday after unions and employers agreed "
    "a new wage deal. Container terminals resumed loading ships and shipping lines said delays would ease by the weekend.",
    ("Rotterdam",),
    datetime(2022, 9, 15, 21, tzinfo=UTC),
    "en",
)


@pytest.fixture(scope="module")
def seed_decisions() -> list[clustering.Decision]:
    return clustering.cluster([*_seed_inputs(), UNRELATED])


def test_seed_articles_form_one_story_with_the_preview(seed_decisions: list[clustering.Decision]) -> None:
    seeds, unrelated = seed_decisions[:5], seed_decisions[5]
    assert seeds[0].article_id.startswith("004_") and seeds[0].started  # the preview comes first in publication order
    assert {d.story_id for d in seeds} == {seeds[0].story_id}
    assert all(not d.started and d.top_terms for d in seeds[1:])
    assert unrelated.started and unrelated.story_id == "unrelated"


def test_seed_preview_joins_the_same_day_story_when_it_arrives_last() -> None:
    seeds = _seed_inputs()
    preview, same_day = seeds[0], seeds[1:]
    decisions = clustering.cluster([*same_day, preview, UNRELATED])
    assert len({d.story_id for d in decisions[:5]}) == 1
    assert decisions[4].article_id == preview.article_id and not decisions[4].started
    assert decisions[5].started


def test_live_stories_are_capped_longest_idle_first() -> None:
    c = clustering.OnlineClusterer(clustering.Settings(max_stories=2))
    for i, (t, b) in enumerate([("Port strike ends", "Dock workers ended a strike."), ("Volcano erupts", "Lava reached villages."),
                                ("Chess final drawn", "The chess final ended in a draw."), ("Bridge reopens", "Traffic returns.")]):
        c.add(_article(i, t, b, i))
    assert sorted(c.stories) == ["a2", "a3"]


def test_a_story_stays_indexed_under_a_bounded_set_of_terms_however_many_articles_join() -> None:
    """Each joining article brings new words; the story's index keys must not grow with them."""
    t0 = datetime(2024, 3, 1, tzinfo=UTC)
    clusterer = clustering.OnlineClusterer()
    core = "Harbour strike Rotterdam dock workers union wage deal terminal containers port " * 3
    decisions = [
        clusterer.add(clustering.ArticleInput(
            str(i), "Rotterdam dock strike", f"{core} word{i}a word{i}b word{i}c word{i}d", (), t0 + timedelta(hours=i), "en"
        ))
        for i in range(120)
    ]
    assert len({d.story_id for d in decisions}) == 1
    (story,) = clusterer.stories.values()
    assert len(story.keys) <= clustering.SETTINGS.index_terms
    assert sum(len(ids) for ids in clusterer._index.values()) <= clustering.SETTINGS.index_terms


def test_recorded_decisions_placed_again_give_the_same_state_and_the_same_next_decisions() -> None:
    """A clusterer rebuilt from the log's decisions (place) equals the one that took them (add)."""
    stream = _toy()
    for cut in range(len(stream) + 1):
        decided = clustering.OnlineClusterer()
        decisions = [decided.add(a) for a in stream[:cut]]
        rebuilt = clustering.OnlineClusterer()
        for a, d in zip(stream[:cut], decisions, strict=True):
            rebuilt.place(a, d.story_id, d.merged)
        assert pickle.dumps(rebuilt) == pickle.dumps(decided)
        assert [rebuilt.add(a) for a in stream[cut:]] == [decided.add(a) for a in stream[cut:]]


def test_a_recorded_decision_is_kept_even_where_this_version_would_decide_otherwise() -> None:
    t0 = datetime(2024, 3, 1, tzinfo=UTC)
    a = clustering.ArticleInput("a", "Port strike ends", "Dock workers ended their strike after a wage deal.", (), t0, "en")
    b = clustering.ArticleInput("b", "Port strike ends", "Dock workers ended their strike after a wage deal.", (),
                                t0 + timedelta(hours=1), "en")
    c = clustering.OnlineClusterer()
    c.place(a, "story-1")
    c.place(b, "story-2")  # an older version kept them apart; the log says so, and the state follows the log
    assert set(c.stories) == {"story-1", "story-2"} and c.stories["story-2"].size == 1
