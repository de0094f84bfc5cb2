"""The known-name pass for languages with no model: its precision on hand-labelled reports (tests/fixtures)."""

from __future__ import annotations

from multilingual_reports import known_name_quality, seed_known_names
from newsflow.domain.known_names import KnownEntity, KnownNames

# Measured with the seeds' registry (entities of at least two seeds): precision 0.939 (62 of 66), recall 0.586
# (docs/enrichment.md). The pass is on by default because of this figure.
MIN_PRECISION = 0.90


def test_precision_on_labelled_reports_in_languages_with_no_model() -> None:
    quality = known_name_quality(seed_known_names(min_articles=2))
    assert quality.found >= 50
    assert quality.precision >= MIN_PRECISION, quality


def known(*entities: tuple[str, str, tuple[str, ...]]) -> KnownNames:
    return KnownNames(KnownEntity(name, kind, spellings) for name, kind, spellings in entities)


def test_matches_whole_words_with_their_capitals_whatever_the_accents() -> None:
    names = known(("Vladimir Putin", "person", ("Putin",)), ("Uzbekistan", "place", ()), ("SCO", "org", ()))
    text = "Vladímir Putin llegó a Uzbekistán. Putin habló; putinismo, Putins, SCO y scope no son nombres."
    found = {e["name"]: e for e in names.find(text).entities}
    assert set(found) == {"Vladimir Putin", "Uzbekistan", "SCO"}
    assert found["Vladimir Putin"]["count"] == 2 and found["Vladimir Putin"]["aliases"] == ["Putin", "Vladímir Putin"]
    assert found["Uzbekistan"]["aliases"] == ["Uzbekistán"]
    assert text[found["Uzbekistan"]["first_offset"] :].startswith("Uzbekistán")


def test_the_longer_name_wins_and_short_or_lowercase_names_are_left_out() -> None:
    names = known(
        ("Shanghai Cooperation Organization", "org", ()),
        ("Shanghai", "place", ()),
        ("Xi Jinping", "person", ("Xi",)),
        ("West", "place", ("west",)),
    )
    assert names.size == 4  # "Xi" is too short, "west" has no capital
    found = names.find("Xi Jinping went to the Shanghai Cooperation Organization, not to Shanghai. Xi left.").entities
    assert [(e["name"], e["count"]) for e in found] == [
        ("Xi Jinping", 1),
        ("Shanghai Cooperation Organization", 1),
        ("Shanghai", 1),
    ]


def test_an_empty_registry_still_reads_the_article() -> None:
    result = known().find("Nadie conocido aquí.")
    assert result.supported and result.entities == [] and result.model == "known-names@1"
