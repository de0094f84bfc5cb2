"""The cleaning stage on real scraped text, HTML, and bad input. Pure: no broker, no database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsflow.app.inspection import inspect_message, raw_message
from newsflow.domain.cleaning.cleaner import CleaningFailure, candidate_hash, clean_article
from newsflow.domain.cleaning.text import line_key, repair
from newsflow.domain.contract import RawArticleV1, Rejection, decode_raw_message
from newsflow.samples import SEEDS
from seed_articles import cleaned, seed_message

# Every chrome line of every seed, with the reason it must be removed for.
CHROME: dict[str, list[tuple[str, str]]] = {
    "000_0a4c76719d70d0cd.txt": [
        ("Ns News Online Desk:Ns News Online Desk:", "byline"),
        ("Related Articles", "related_block"),
        ("Leave a Reply", "comment_prompt"),
        ("Your email address will not be published. Required fields are marked *", "comment_prompt"),
        ("Back to top button", "navigation"),
    ],
    "001_698f00567ab2257d.txt": [
        ("Xi, Putin Discuss Cooperation, Ukraine Concerns at Uzbekistan Security Summit | News | DV", "page_title"),
        ("js, los/fb (AP, AFP, Reuters)", "editor_credit"),
        ("Tags: , , , , , , ,", "tags"),
        ("Previous Post", "navigation"),
        ("Pope Francis: Arming Ukraine could be ‘morally acceptable’", "teaser"),
        ("Next Post", "navigation"),
        ("Wheat farmers in Argentina have abandoned some plots due to drought, the exchange says", "teaser"),
        ("Leave a Reply", "comment_prompt"),
        ("Your email address will not be published. Required fields are marked *", "comment_prompt"),
    ],
    "002_002a5dd225dc18c5.txt": [
        ("June 25, 2024", "scrape_date"),
        ("Balkan Travellers", "site_name"),
        ("Comprehensive up-to-date news coverage, aggregated from sources all over the world", "header"),
        ("See also In Sweden, on the island of Gotland, NATO membership - liberation - population split", "see_also"),
        ("For more, read their op-ed:", "read_more"),
        ("read more: “China shows no restraint in its dealings with Russia”", "read_more"),
    ],
    "003_c33038bbcf928f26.txt": [
        ("Date:", "empty_label"),
        ("Source: La Verdad", "source_credit"),
        ("LEAVE A REPLY", "comment_prompt"),
        ("Please enter your comment!", "comment_prompt"),
        ("Please enter your name here", "comment_prompt"),
        ("Share post:", "share"),
        ("Subscribe", "subscribe"),
        ("Popular", "related_block"),
        ("More like this", "related_block"),
        ("Related", "related_block"),
    ],
    "004_f3a96fe6a3461128.txt": [
        ("B2E5F5DF FABE 4F2F 9E73 7F4CE0E9712F", "guid"),
        ("Source: RES-EAP", "source_credit"),
    ],
}
TITLES = {
    "000_0a4c76719d70d0cd.txt": "Putin, Xi meet for first time since invasion of Ukraine",
    "001_698f00567ab2257d.txt": "Xi, Putin Discuss Cooperation, Ukraine Concerns at Uzbekistan Security Summit",
    "002_002a5dd225dc18c5.txt": "In front of Xi Jinping, Vladimir Putin condemned countries that want a “unipolar world”.",
    "003_c33038bbcf928f26.txt": "Putin and Xi Jinping Commit to Consolidating a “Global Leadership” at Samarkand Summit",
    "004_f3a96fe6a3461128.txt": "Moscow: Putin-Xi meeting next week",
}


def message(**fields: object) -> RawArticleV1:
    return RawArticleV1.model_validate(
        {"url": "https://example.invalid/a", "source": "Example", "fetched_at": datetime.now(UTC), **fields}
    )


def html_message(html: str) -> RawArticleV1:
    return message(html=html)


def text_message(text: str) -> RawArticleV1:
    return message(text=text)


@pytest.mark.parametrize("name", sorted(CHROME))
def test_seed_chrome_goes_body_stays_title_once(name: str) -> None:
    result = cleaned(seed_message(name))
    removed = {(" ".join(r.text.split()), r.reason) for r in result.removed}
    for line, reason in CHROME[name]:
        assert (line, reason) in removed, f"{line!r} not removed as {reason}"
    chrome = {line for line, _ in CHROME[name]}
    title = TITLES[name]
    assert result.title == title
    assert title not in result.text, "the title is metadata, not body"
    body_lines = [
        " ".join(line.split())
        for line in (SEEDS / name).read_text().splitlines()
        if line.strip()
        and " ".join(line.split()) not in chrome
        and line_key(line) != line_key(title)
        and not line.startswith(title)  # 001's page-title line carries a " | News | DV" suffix
    ]
    text = " ".join(result.text.split())
    for line in body_lines:
        line = line.removeprefix("Ns News Online Desk:Ns News Online Desk: ")
        assert line in text, f"body line lost: {line[:80]!r}"
    assert not any(line in text for line in chrome), "a chrome line survived"


def test_seed_metadata_keeps_what_the_body_loses() -> None:
    assert cleaned(seed_message("000_0a4c76719d70d0cd.txt")).metadata["byline"] == "Ns News Online Desk"
    dv = cleaned(seed_message("001_698f00567ab2257d.txt")).metadata
    assert (dv["site_name"], dv["section"]) == ("DV", "News")
    assert dv["editor_credit"] == "js, los/fb (AP, AFP, Reuters)"
    assert cleaned(seed_message("002_002a5dd225dc18c5.txt")).metadata["page_date"] == "2024-06-25"
    assert cleaned(seed_message("003_c33038bbcf928f26.txt")).metadata["source_credit"] == "La Verdad"


def test_subheads_quotes_and_short_paragraphs_stay() -> None:
    dv = cleaned(seed_message("001_698f00567ab2257d.txt")).text
    assert "\nBilateral talks on the sidelines\n" in dv and "\nThe desire to resist the West\n" in dv
    assert "Putin said that cooperation is developing “positively.”" in dv
    preview = cleaned(seed_message("004_f3a96fe6a3461128.txt")).text
    assert "– Silence from Beijing –" in preview and "– “Impossible” –" in preview


def test_a_date_line_equal_to_the_publication_date_is_a_dateline_not_a_scrape_date() -> None:
    result = cleaned(seed_message("002_002a5dd225dc18c5.txt", published_at="2024-06-25T10:00:00+00:00"))
    assert ("June 25, 2024", "date_line") in {(r.text, r.reason) for r in result.removed}
    assert result.metadata["dateline"] == "2024-06-25"


def test_learned_lines_go_only_for_their_source() -> None:
    msg = seed_message("004_f3a96fe6a3461128.txt")
    lead = "Beijing generally confirms last-minute movements of its leaders."
    result = cleaned(msg, frozenset({candidate_hash(line_key(lead))}))
    assert (lead, "learned_chrome") in {(r.text, r.reason) for r in result.removed}
    assert lead not in result.text


def test_normalization_repairs_mojibake_entities_and_invisible_characters() -> None:
    assert repair("The Mona Lisa doesnâ€™t have eyebrows.") == "The Mona Lisa doesn’t have eyebrows."
    assert repair("Fish &amp; chips &eacute; &#8220;x&#8221;") == "Fish & chips é “x”"
    assert repair("zero\u200bwidth\u00ad soft\ufeff bom\x07") == "zerowidth soft bom"
    assert repair("cafe\u0301") == "café"  # NFC
    text = "Headline\n\nA  paragraph\u00a0with   odd\tspaces and caf\u00c3\u00a9 mojibake in it, long enough to be body text.\n"
    result = cleaned(text_message(text))
    assert result.text == "A paragraph with odd spaces and café mojibake in it, long enough to be body text."


ARTICLE_HTML = """<!doctype html><html><head><title>Port strike ends after nine days | Business | Example Times</title>
<meta name="author" content="Jane Doe"><meta property="article:published_time" content="2022-09-15T10:00:00Z">
<meta property="og:site_name" content="Example Times"></head><body>
<nav><a href="/">Home</a> <a href="/business">Business</a> <a href="/login">Log in</a></nav>
<article><h1>Port strike ends after nine days</h1>
<p>Dock workers at the country's largest container port returned to work on Thursday after unions and employers
agreed on a new wage deal, ending a nine-day strike that had left hundreds of ships waiting offshore.</p>
<p>The agreement raises pay by seven percent this year and four percent next year, union officials said, and it
includes new limits on night shifts that had been the main sticking point in talks.</p>
<h2>Backlog will take weeks</h2>
<p>Shipping companies warned that clearing the backlog of containers would take at least three weeks, and that
freight rates on routes through the port were likely to stay high until the end of the month.</p>
<p>“We are relieved, but the damage is done,” said the head of the national exporters' association.</p>
</article>
<aside><h3>Most read</h3><ul><li><a href="/x">Celebrity chef opens third restaurant</a></li></ul></aside>
<section id="comments"><h3>Leave a Reply</h3><p>Your email address will not be published.</p></section>
<footer>© 2022 Example Times. All rights reserved. <a href="/privacy">Privacy</a></footer>
</body></html>"""


def test_html_main_text_and_metadata() -> None:
    result = cleaned(html_message(ARTICLE_HTML))
    assert result.input_kind == "html" and result.extractor and result.extractor.startswith("trafilatura@")
    assert result.title == "Port strike ends after nine days"
    assert "Dock workers at the country's largest container port" in result.text
    assert "Backlog will take weeks" in result.text
    assert "“We are relieved, but the damage is done,”" in result.text
    for chrome in ("Celebrity chef", "Leave a Reply", "Your email address", "All rights reserved", "Log in"):
        assert chrome not in result.text
    assert result.metadata["byline"] == "Jane Doe"
    assert result.metadata["html_date"] == "2022-09-15"
    assert result.metadata["site_name"] == "Example Times"


def test_binary_body_is_rejected() -> None:
    failure = clean_article(html_message("%PDF-1.7\n%\ufffd\ufffd\n1 0 obj << /Type /Catalog >>"))
    assert isinstance(failure, CleaningFailure) and failure.reason == "binary_content"
    noise = "".join(chr(c) for c in range(1, 32) if chr(c) not in "\t\n\r") * 50 + "some text"
    failure = clean_article(text_message(noise))
    assert isinstance(failure, CleaningFailure) and failure.reason == "binary_content"


def test_pathologically_nested_html_is_rejected_before_extraction() -> None:
    html = "<html><body>" + "<div>" * 20_000 + "<p>deep</p>" + "</div>" * 20_000 + "</body></html>"
    failure = clean_article(html_message(html))
    assert isinstance(failure, CleaningFailure) and failure.reason == "html_too_deep"
    assert "20000" in failure.detail


def test_page_of_only_chrome_is_rejected_as_empty_after_cleaning() -> None:
    text = "Leave a Reply\n\nYour email address will not be published.\n\nShare post:\n\nSubscribe\n\nRelated\n"
    failure = clean_article(text_message(text))
    assert isinstance(failure, CleaningFailure) and failure.reason == "empty_after_cleaning"


def test_ten_megabyte_page_and_undecodable_bytes_are_rejected_by_the_contract() -> None:
    big = json.dumps(
        {
            "url": "https://example.invalid/big",
            "source": "S",
            "fetched_at": "2022-09-15T10:00:00Z",
            "html": "<p>" + "x" * (10 * 1024 * 1024) + "</p>",
        }
    ).encode()
    rejected = decode_raw_message(big)
    assert isinstance(rejected, Rejection) and rejected.reason == "too_large"
    rejected = decode_raw_message(b'{"url": "https://example.invalid/b", "text": "caf\xe9 \xff\xfe"}')
    assert isinstance(rejected, Rejection) and rejected.reason == "invalid_utf8"


def test_inspect_json_keys_are_stable(tmp_path: Path) -> None:
    report = inspect_message(raw_message(SEEDS / "003_c33038bbcf928f26.txt"))
    assert {"title", "text", "metadata", "removed", "language", "entities", "dedup"} <= report.keys()
    assert report["language"]["code"] == "en" and report["dedup"]["exact_key"].startswith("v1:")
    putin = next(e for e in report["entities"] if e["name"] == "Vladimir Putin")
    assert {"name", "type", "count", "aliases"} <= putin.keys() and putin["type"] == "person"
    assert report["metadata"]["source"] == "La Verdad"  # from the manifest next to the file
    assert report["metadata"]["source_credit"] == "La Verdad"
    assert {"text": "Source: La Verdad", "reason": "source_credit"} in report["removed"]
    page = tmp_path / "page.html"
    page.write_text(ARTICLE_HTML)
    report = inspect_message(raw_message(page, source="Example Times", url="https://example.invalid/port"))
    assert report["metadata"]["url"] == "https://example.invalid/port"
    assert report["title"] == "Port strike ends after nine days"
    bad = tmp_path / "bad.json"
    bad.write_text('{"url": "https://example.invalid/x", "source": "S"}')
    assert inspect_message(raw_message(bad))["rejected"]["reason"] == "missing_field"


def test_standalone_byline_at_the_head_is_metadata_and_a_subhead_starting_with_from_stays() -> None:
    text = (
        "Port strike ends after nine days\n\nBy Jane Doe and John Roe\n\nFrom Rotterdam to Hamburg\n\n"
        "Dock workers at the country's largest container port returned to work on Thursday after a deal.\n"
    )
    result = cleaned(text_message(text))
    assert ("By Jane Doe and John Roe", "byline") in {(r.text, r.reason) for r in result.removed}
    assert result.metadata["byline"] == "Jane Doe and John Roe"
    assert result.text.startswith("From Rotterdam to Hamburg")
