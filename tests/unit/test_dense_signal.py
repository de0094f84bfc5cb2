"""The dense signal in the clusterer: when it decides, when it stays out, and old snapshots without it."""

from __future__ import annotations

import pickle
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_clustering import _toy

from newsflow.domain import article_vectors, clusterer_settings, clustering
from newsflow.readside import story_clusterer

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
SETTINGS = clusterer_settings.SETTINGS
OFF = clusterer_settings.TERMS_ONLY
BEFORE_LAYOUT = Path(__file__).parents[1] / "fixtures" / "clusterer_snapshot_before_layout.bin"

EN = (
    "Floods force thousands from their homes in Valencia",
    "Heavy rain flooded the region of Valencia overnight. Emergency services evacuated more than 4,000 residents"
    " and the regional government closed schools.",
)
FR = (
    "Inondations à Valence : des milliers d'habitants évacués",
    "De fortes pluies ont inondé la région de Valence dans la nuit. Les secours ont évacué plus de 4 000 habitants"
    " et le gouvernement régional a fermé les écoles.",
)
FR_OTHER = (
    "Le musée d'Orsay rouvre après deux ans de travaux",
    "Le musée d'Orsay a rouvert ses portes samedi après deux ans de rénovation. Les visiteurs découvrent de"
    " nouvelles salles consacrées aux impressionnistes.",
)


def _input(
    article_id: str, language: str, vector: tuple[float, ...] | None, hours: float = 0.0, text: str = "x"
) -> clustering.ArticleInput:
    return clustering.ArticleInput(article_id, None, text, (), T0 + timedelta(hours=hours), language, vector)


NO_NETWORK = """
import socket

def refuse(*args, **kwargs):
    raise OSError("network access attempted")

socket.socket.connect = refuse
socket.create_connection = refuse
from newsflow.domain import article_vectors
print(len(article_vectors.embed("Floods in Valencia", "Heavy rain flooded the region.")))
"""


def test_the_model_loads_from_the_installed_package_with_every_connection_refused() -> None:
    done = subprocess.run([sys.executable, "-c", NO_NETWORK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(article_vectors.DIMS)


def test_a_vector_round_trips_through_its_event_encoding_in_684_characters() -> None:
    vector = article_vectors.embed(*EN)
    encoded = article_vectors.encode(vector)
    assert len(encoded) == 684  # 256 float16s, base64
    decoded = article_vectors.decode(encoded)
    assert len(decoded) == article_vectors.DIMS
    assert sum(a * b for a, b in zip(vector, decoded, strict=True)) == pytest.approx(1.0, abs=1e-3)


def test_an_english_report_is_closer_to_the_french_report_of_its_event_than_to_an_unrelated_one() -> None:
    en, fr, other = (article_vectors.embed(*x) for x in (EN, FR, FR_OTHER))

    def cos(a: tuple[float, ...], b: tuple[float, ...]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(en, fr) > cos(en, other) + 0.1
    # Raw vectors of one language are close whatever they say: the clusterer takes each language's mean out.
    assert cos(fr, other) > cos(en, fr)


def test_with_the_signal_off_vectors_change_no_decision() -> None:
    stream = _toy()
    with_vectors = [replace(a, vector=(1.0, 0.0, 0.0) if i % 2 else (0.0, 1.0, 0.0)) for i, a in enumerate(stream)]
    assert clustering.cluster(with_vectors, OFF) == clustering.cluster(stream, OFF)


def test_within_one_language_the_default_decides_as_without_the_signal() -> None:
    """The daemon's default uses vectors only across languages: no monolingual decision changes."""
    stream = [replace(a, language="en") for a in _toy()]
    with_vectors = [replace(a, vector=(1.0, 0.0, 0.0) if i % 2 else (0.6, 0.8, 0.0)) for i, a in enumerate(stream)]
    assert clustering.cluster(with_vectors) == clustering.cluster(with_vectors, OFF)
    everywhere = clustering.cluster(with_vectors, clusterer_settings.EVERYWHERE)
    assert everywhere != clustering.cluster(with_vectors, OFF), "the toy stream cannot tell the settings apart"


def test_without_vectors_the_clusterer_decides_on_terms_alone() -> None:
    stream = _toy()
    assert clustering.cluster(stream) == clustering.cluster(stream, replace(OFF, threshold=SETTINGS.threshold))


def test_a_report_in_another_language_joins_on_the_dense_path_only_when_it_is_on() -> None:
    # One shared name: the term index finds the story, the terms alone are too weak to join.
    en = _input("en", "en", (1.0, 0.0, 0.0, 0.0), 0, f"samarkand {EN[1]}")
    fr = _input("fr", "fr", (0.9, 0.1, 0.0, 0.0), 1, f"samarkand {FR[1]}")
    on = clustering.cluster([en, fr])
    assert on[1].story_id == on[0].story_id and not on[1].started
    off = clustering.cluster([en, fr], OFF)
    assert off[1].started


def test_the_dense_path_does_not_join_an_unrelated_report() -> None:
    en = _input("en", "en", (1.0, 0.0, 0.0, 0.0), 0, f"samarkand {EN[1]}")
    fr = _input("fr", "fr", (0.0, 0.0, 1.0, 0.0), 1, f"samarkand {FR[1]}")
    assert clustering.cluster([en, fr])[1].started


def test_the_cross_language_path_is_only_for_a_language_the_story_lacks() -> None:
    a = _input("a", "en", (1.0, 0.0, 0.0, 0.0), 0, f"samarkand {EN[1]}")
    b = _input("b", "en", (0.9, 0.1, 0.0, 0.0), 1, f"samarkand {FR[1]}")  # labelled English: no cross path
    assert clustering.cluster([a, b], replace(clusterer_settings.SETTINGS, w_dense=0.0))[1].started


def test_a_snapshot_without_vectors_restores_and_takes_articles_with_vectors() -> None:
    restored = story_clusterer._load(BEFORE_LAYOUT.read_bytes())  # written before the dense signal existed
    assert "_language_sums" in vars(restored.model)
    assert all(story.dense is None and story.languages is None for story in restored.model.stories.values())
    first = next(iter(restored.model.stories))
    decision = restored.model.add(replace(_toy()[0], article_id="late", vector=(1.0, 0.0, 0.0)))
    assert decision.story_id == first
    story = restored.model.stories[first]
    assert story.dense is not None and story.languages == frozenset({"en"})


def test_a_state_pickled_without_the_dense_fields_restores() -> None:
    c = clustering.OnlineClusterer()
    for a in _toy():
        c.add(a)
    state = vars(c)
    del state["_language_sums"]
    for story in c.stories.values():
        vars(story).pop("dense", None)
        vars(story).pop("languages", None)
    restored = pickle.loads(pickle.dumps(c))
    assert restored.add(replace(_toy()[1], article_id="again", vector=(0.0, 1.0))).story_id in restored.stories
