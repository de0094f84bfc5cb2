"""Line rules for site chrome, one collapsed line at a time, and the date and byline matchers."""

from __future__ import annotations

from datetime import date

import pytest

from newsflow.domain.cleaning import chrome_rules as rules
from newsflow.domain.cleaning.chrome_rules import Match, byline, byline_prefix, classify, parse_date_line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Leave a Reply", Match(rules.COMMENT_PROMPT)),
        ("Your email address will not be published. Required fields are marked *", Match(rules.COMMENT_PROMPT)),
        ("Comments (12)", Match(rules.COMMENT_PROMPT)),
        ("Share this story", Match(rules.SHARE)),
        ("Email | Print", Match(rules.SHARE)),
        ("Share on Facebook", Match(rules.SHARE)),
        ("Share via email and your favourite apps", Match(rules.SHARE)),
        ("Subscribe now", Match(rules.SUBSCRIBE)),
        ("Tags: , , ,", Match(rules.TAGS)),
        ("Tagged with: summit, SCO", Match(rules.TAGS)),
        ("Related Articles", Match(rules.RELATED_BLOCK)),
        ("More from Ns News", Match(rules.RELATED_BLOCK)),
        ("Previous Post", Match(rules.NAVIGATION)),
        ("Back to top button", Match(rules.NAVIGATION)),
        ("Next »", Match(rules.NAVIGATION)),
        ("See also: the summit in Samarkand", Match(rules.SEE_ALSO)),
        ("read more: Putin meets Xi", Match(rules.READ_MORE)),
        ("For more information:", Match(rules.READ_MORE)),
        ("© 2024 Example News", Match(rules.COPYRIGHT)),
        ("All rights reserved.", Match(rules.COPYRIGHT)),
        ("Source: La Verdad", Match(rules.SOURCE_CREDIT, "La Verdad")),
        ("Courtesy: Reuters TV", Match(rules.SOURCE_CREDIT, "Reuters TV")),
        ("js, los/fb (AP, AFP, Reuters)", Match(rules.EDITOR_CREDIT, "AP, AFP, Reuters")),
        ("(AP, AFP)", Match(rules.EDITOR_CREDIT, "AP, AFP")),
        ("(with inputs from PTI)", Match(rules.EDITOR_CREDIT)),
        ("Reporting by Jane Doe", Match(rules.EDITOR_CREDIT)),
        ("Reporting by Jane Doe in Moscow; Editing by John Smith", Match(rules.EDITOR_CREDIT)),
        ("reporting by hand is slower than it looks", None),
        ("0a4c7671-9d70-d0cd-1234-567890abcdef", Match(rules.GUID)),
        ("d41d8cd98f00b204e9800998ecf8427e", Match(rules.GUID)),
        ("Published:", Match(rules.EMPTY_LABEL)),
        ("Written by:", Match(rules.EMPTY_LABEL)),
    ],
)
def test_chrome_lines_are_classified(line: str, expected: Match) -> None:
    assert classify(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "Putin and Xi met in Samarkand on Thursday.",
        "The Leaders Meet Again",
        "“We will cooperate,” Xi said.",
        "Share prices fell sharply on Monday after the central bank surprised markets with a rate rise.",
        "Chinese President Xi: we will cooperate.",
        "This ticket is a subscribe-only offer for readers of our weekly paper.",
        "Leave a reply " + "and say what you think about the summit " * 4,
    ],
)
def test_article_text_is_not_chrome(line: str) -> None:
    assert classify(line) is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("June 25, 2024", date(2024, 6, 25)),
        ("Published: 2022-09-15 10:30", date(2022, 9, 15)),
        ("15 September 2022", date(2022, 9, 15)),
        ("Updated on Thu, Sep 15, 2022 at 4:30 pm", date(2022, 9, 15)),
        ("Putin met Xi on Thursday.", None),
        ("June 25, 2024 and then some more words follow here for sure", None),
        ("Published on Thursday June 25, 2024 at 10:30 " + "x " * 10, None),
    ],
)
def test_parse_date_line(line: str, expected: date | None) -> None:
    assert parse_date_line(line) == expected


def test_byline() -> None:
    assert byline("By Jane Doe and John Roe") == "Jane Doe and John Roe"
    assert byline("By Jane Doe.") is None
    assert byline("by the way, it rained") is None


def test_byline_prefix() -> None:
    doubled = "Ns News Online Desk:Ns News Online Desk: Chinese President Xi met Putin."
    assert byline_prefix(doubled) == ("Ns News Online Desk:Ns News Online Desk:", "Ns News Online Desk")
    assert byline_prefix("Ns News Desk: Xi met Putin.") == ("Ns News Desk:", "Ns News Desk")
    assert byline_prefix("Desk:Desk:") is None
    assert byline_prefix("Chinese President Xi: we will cooperate.") is None
