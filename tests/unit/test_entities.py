"""Named entities with canonical names, on the seeds (English spaCy model, loaded offline)."""

from __future__ import annotations

import itertools
from typing import Any

from multilingual_reports import REPORTS
from newsflow.domain.entities import CHUNK_CHARS, MODEL, chunk_spans, extract, mentions_in, model_for, resolve
from seed_articles import cleaned, long_text, seed_message


def entities_of(name: str) -> dict[str, dict[str, Any]]:
    result = extract(cleaned(seed_message(name)).text, "en")
    assert result.supported
    return {e["name"]: e for e in result.entities}


def test_short_mentions_and_acronyms_resolve_to_the_full_name() -> None:
    found = entities_of("000_0a4c76719d70d0cd.txt")
    putin, xi = found["Vladimir Putin"], found["Xi Jinping"]
    assert putin["type"] == xi["type"] == "person"
    assert "Putin" in putin["aliases"] and "Xi" in xi["aliases"]
    assert putin["count"] >= 8 and xi["count"] >= 6  # every "Putin" and "Xi" counted on the full name
    sco = found["Shanghai Cooperation Organization"]
    assert sco["type"] == "org" and "SCO" in sco["aliases"] and sco["count"] >= 3
    assert found["Agence France-Presse"]["aliases"] == ["AFP"]
    assert found["Ebrahim Raisi"]["type"] == "person"  # the model's "Raisi" place tag is overruled
    assert found["Samarkand"]["type"] == "place"
    for short in ("Putin", "Xi", "SCO", "Raisi", "AFP"):
        assert short not in found, f"{short} should be folded into its full name"
    text = cleaned(seed_message("000_0a4c76719d70d0cd.txt")).text
    assert text[putin["first_offset"] :].startswith("Vladimir Putin")


def test_titles_and_honorifics_are_stripped() -> None:
    found = entities_of("001_698f00567ab2257d.txt")  # "Chinese President Xi Jinping", "Mr. Putin"
    assert "Xi Jinping" in found and "Vladimir Putin" in found
    assert not any(n.startswith(("President", "Chinese President", "Mr")) for n in found)
    assert found["United States"]["type"] == "place" and "US" in found["United States"]["aliases"]


def test_entities_only_in_chrome_are_not_extracted() -> None:
    found = entities_of("001_698f00567ab2257d.txt")
    # The teaser headlines after the article: "Pope Francis: ...", "Wheat farmers in Argentina ..."
    assert "Argentina" not in found and "Francis" not in found and "Pope Francis" not in found
    assert not any("Leave a Reply" in n or "Previous Post" in n for n in found)


def test_a_language_with_no_model_is_marked_unsupported_not_guessed() -> None:
    result = extract("Bundeskanzler Olaf Scholz traf Präsident Emmanuel Macron am Donnerstag in Paris.", "de")
    assert not result.supported and result.entities == []
    assert model_for("de") is None and model_for("fr") == "fr_core_news_sm@3.8.0" and model_for("en") == MODEL


def test_french_reports_get_the_french_model_with_titles_and_articles_stripped() -> None:
    report = next(r for r in REPORTS["reports"] if r["language"] == "fr")
    result = extract(report["text"], "fr")
    found = {e["name"]: e for e in result.entities}
    assert result.supported
    assert found["Vladimir Poutine"]["type"] == "person" and found["Vladimir Poutine"]["aliases"] == ["Poutine"]
    assert found["Vladimir Poutine"]["count"] == 3  # "Le président russe Vladimir Poutine", "Poutine" twice
    assert {"Xi Jinping", "Narendra Modi", "Ebrahim Raïssi", "Chavkat Mirzioïev"} <= set(found)
    assert found["Ouzbékistan"]["type"] == found["Samarcande"]["type"] == "place"
    assert "Chine" in found and "la Chine" not in found  # "la Chine": the article comes off
    assert found["Organisation de coopération de Shanghai"]["type"] == "org"
    assert not any(n.startswith(("président", "Premier ministre")) for n in found)


def test_a_long_french_text_in_pieces_equals_the_one_piece_run() -> None:
    report = next(r for r in REPORTS["reports"] if r["language"] == "fr")
    text = "\n".join([report["text"]] * 12)
    spans = chunk_spans(text)
    assert len(spans) > 1
    pieces = [m for start, end in spans for m in mentions_in(text[start:end], start, "fr")]
    assert resolve(pieces, text) == extract(text, "fr")


def test_a_long_text_is_read_in_line_aligned_pieces_that_cover_it() -> None:
    text = long_text()
    spans = chunk_spans(text)
    assert len(spans) >= 3
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans)), "contiguous, nothing skipped or read twice"
    assert all(end - start <= CHUNK_CHARS for start, end in spans)
    assert all(text[end - 1] == "\n" for _, end in spans[:-1]), "cut after a line break"
    assert chunk_spans("short text") == [(0, 10)]
