"""Site chrome recognised line by line, each with the reason it is not article text.

A rule looks at one collapsed line without context. Context (where the title
is, whether the line sits in the trailing block after the article) is the
cleaner's job. Patterns are anchored and bounded by a word limit, so a long
paragraph that merely starts like chrome ("Share prices fell ...") stays.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from dateutil import parser as date_parser

from newsflow.domain.cleaning.text import words

# Reasons a line is removed. They are stored in events: append new ones, never rename.
COMMENT_PROMPT = "comment_prompt"
SHARE = "share"
SUBSCRIBE = "subscribe"
TAGS = "tags"
RELATED_BLOCK = "related_block"
NAVIGATION = "navigation"
TEASER = "teaser"
SEE_ALSO = "see_also"
READ_MORE = "read_more"
COPYRIGHT = "copyright"
SOURCE_CREDIT = "source_credit"
EDITOR_CREDIT = "editor_credit"
GUID = "guid"
EMPTY_LABEL = "empty_label"
DATE_LINE = "date_line"
SCRAPE_DATE = "scrape_date"
BYLINE = "byline"
PAGE_TITLE = "page_title"
DUPLICATE_TITLE = "duplicate_title"
DUPLICATE_LINE = "duplicate_line"
SITE_NAME = "site_name"
HEADER = "header"
LEARNED_CHROME = "learned_chrome"

# Lines after which the article is over when no paragraph of body text follows.
END_MARKERS = frozenset({COMMENT_PROMPT, SHARE, SUBSCRIBE, TAGS, RELATED_BLOCK, NAVIGATION, READ_MORE})

_I = re.IGNORECASE
_SOCIAL = r"(?:facebook|twitter|x|linkedin|whatsapp|telegram|reddit|pinterest|messenger|email|e-mail|print|tweet|share|copy link|flipboard|viber)"


@dataclass(frozen=True)
class _Rule:
    reason: str
    pattern: re.Pattern[str]
    max_words: int


_RULES: tuple[_Rule, ...] = (
    _Rule(
        COMMENT_PROMPT,
        re.compile(
            r"(?:leave a (?:reply|comment)|post a comment|add a comment|write a comment|"
            r"join the (?:conversation|discussion)|\d+\s+comments?|comments?(?:\s*\(\d+\))?|"
            r"your email address will not be published\b.*|required fields are marked\b.*|"
            r"please enter (?:your|a) (?:comment|name|email)\b.*|save my name,? email\b.*|"
            r"you must be logged in to post a comment\b.*|cancel reply|submit comment|post comment|"
            r"notify me of (?:new|follow-up)\b.*|log in to (?:comment|reply)\b.*)\W*",
            _I,
        ),
        25,
    ),
    _Rule(
        SHARE,
        re.compile(
            rf"(?:share(?: this(?: article| story| post| page)?| post| article| story)?(?: (?:on|via) .{{1,30}})?|{_SOCIAL}(?:[\s,|·•/]+{_SOCIAL})*)\W*",
            _I,
        ),
        12,
    ),
    _Rule(
        SUBSCRIBE,
        re.compile(
            r"(?:subscribe(?: now| today| here| for free| to (?:our|the) newsletter)?|"
            r"sign up (?:for|to) (?:our|the) (?:daily |weekly )?newsletter\b.*|newsletter|"
            r"get (?:the latest|our) .{0,60}in your inbox\b.*)\W*",
            _I,
        ),
        15,
    ),
    _Rule(TAGS, re.compile(r"(?:tags?|tagged(?: with)?|topics?|filed under|categories|keywords)\s*:.*", _I), 40),
    _Rule(
        RELATED_BLOCK,
        re.compile(
            r"(?:related(?: articles| posts| stories| news| content| coverage| topics)?|"
            r"popular(?: posts| articles| now| news| stories| today)?|most (?:read|popular|viewed|shared)(?: \w+)?|"
            r"more like this|more (?:stories|news|articles)(?: from .{1,40})?|more from .{1,40}|"
            r"you (?:may|might) (?:also )?(?:like|be interested in)|recommended(?: for you| stories| articles)?|"
            r"trending(?: now| stories)?|read next|what to read next|latest(?: news| posts| articles| stories)?|"
            r"also read|don'?t miss|top stories|editor'?s picks?|in case you missed it)\W*",
            _I,
        ),
        8,
    ),
    _Rule(
        NAVIGATION,
        re.compile(
            r"(?:previous(?: post| article| story)?|next(?: post| article| story)?|back to top(?: button)?|"
            r"skip to (?:main )?content|go to top|scroll to top|main menu|menu|home|search|"
            r"(?:←|«|‹).{0,80}|.{0,80}(?:→|»|›))",
            _I,
        ),
        14,
    ),
    _Rule(SEE_ALSO, re.compile(r"see also\b.*", _I), 30),
    _Rule(
        READ_MORE,
        re.compile(
            r"(?:read more|continue reading|read the (?:full|whole) (?:story|article)|read also|"
            r"click here to read|keep reading)\b.*",
            _I,
        ),
        30,
    ),
    _Rule(READ_MORE, re.compile(r"(?:for more\b.*|.*\bread\b.*):", _I), 10),
    _Rule(COPYRIGHT, re.compile(r"(?:©|\(c\)\s|copyright\b).*|.*\ball rights reserved\W*", _I), 40),
    _Rule(SOURCE_CREDIT, re.compile(r"(?:sources?|credits?|courtesy|via)\s*:\s*(?P<value>\S.{0,80})", _I), 8),
    _Rule(
        EDITOR_CREDIT,
        re.compile(
            r"[a-z]{1,4}(?:\s*[/,]\s*[a-z]{1,4})+(?:\s*\((?P<value>[^)]{1,80})\))?"  # desk initials: "js, los/fb (AP)"
            r"|\((?P<agencies>[A-Z][A-Za-z]{1,12}(?:\s*(?:,|and|/)\s*[A-Z][A-Za-z]{1,12})*)\)"  # "(AP, AFP)"
            r"|(?i:\(?with (?:inputs|reporting) from) .{1,60}\)?"
            # "Reporting by Jane Doe; Editing by ...": any case, then a name (a capital), not "reporting by hand".
            r"|(?i:(?:additional )?(?:reporting|writing|editing|compiled|edited) by)\s+[A-Z(].*"
        ),
        30,
    ),
    _Rule(
        GUID,
        re.compile(
            r"[0-9A-Fa-f]{8}[\s-]?[0-9A-Fa-f]{4}[\s-]?[0-9A-Fa-f]{4}[\s-]?[0-9A-Fa-f]{4}[\s-]?[0-9A-Fa-f]{12}"
            r"|[0-9a-f]{32,64}|[0-9A-F]{32,64}"
        ),
        5,
    ),
    _Rule(
        EMPTY_LABEL,
        re.compile(
            r"(?:date|author|by|published|updated|posted(?: on)?|photo|image|category|source|written by)\s*:?", _I
        ),
        3,
    ),
)

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_WEEKDAY = r"(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?"
_TIME = r"(?:,?\s*(?:at\s+)?\d{1,2}[:.]\d{2}(?:[:.]\d{2})?\s*(?:[ap]\.?m\.?)?(?:\s*[A-Z]{2,5})?)?"
_DATE_LINE = re.compile(
    rf"(?:(?:published|updated|posted|last updated|date)(?: on)?\s*:?\s*)?(?:{_WEEKDAY}\s*)?"
    rf"(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\.?\s+{_MONTH},?\s+\d{{4}}"
    rf"|\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}[./]\d{{1,2}}[./]\d{{4}}){_TIME}",
    _I,
)
_BYLINE = re.compile(r"(?:[Bb]y|BY)\s+(?P<value>[A-Z][\w.'’-]+(?:\s+(?:[A-Z][\w.'’-]+|and|&|,|de|van|von|al))*)")
_DOUBLED_PREFIX = re.compile(r"(?P<prefix>[^\s:][^:\n]{1,60}?:)\s*(?P=prefix)\s*")
_DESK_PREFIX = re.compile(
    r"(?P<prefix>[A-Z][\w .&'’-]{1,50}?\b(?:Desk|Staff Reporter|Staff Writer|Correspondent|Report|Bureau))\s*:\s*"
)


@dataclass(frozen=True)
class Match:
    reason: str
    value: str | None = None


def classify(line: str) -> Match | None:
    """The chrome reason of one collapsed, non-empty line, or None when it may be article text."""
    n = words(line)
    for rule in _RULES:
        if n > rule.max_words:
            continue
        m = rule.pattern.fullmatch(line)
        if m:
            groups = m.groupdict()
            value = groups.get("value") or groups.get("agencies")
            return Match(rule.reason, value.strip() if value else None)
    return None


def parse_date_line(line: str) -> date | None:
    """The date a standalone date line shows ("June 25, 2024", "Published: 2022-09-15 10:30"), else None."""
    if words(line) > 10 or not _DATE_LINE.fullmatch(line.strip(" .")):
        return None
    try:
        cleaned = re.sub(r"^(?:published|updated|posted|last updated|date)(?: on)?\s*:?\s*", "", line, flags=_I)
        parsed: datetime = date_parser.parse(cleaned, fuzzy=True)
        return parsed.date()
    except (ValueError, OverflowError):
        return None


def byline(line: str) -> str | None:
    """The name in a standalone byline ("By Jane Doe and John Roe"), else None."""
    if words(line) > 8 or line.rstrip().endswith((".", "!", "?", '"', "”")):
        return None
    m = _BYLINE.fullmatch(line)
    return m.group("value") if m else None


def byline_prefix(paragraph: str) -> tuple[str, str] | None:
    """A byline glued to the start of a paragraph ("Desk:Desk: Text", "Ns News Desk: Text").

    Returns (removed prefix, byline) or None.
    """
    m = _DOUBLED_PREFIX.match(paragraph) or _DESK_PREFIX.match(paragraph)
    if not m or m.end() >= len(paragraph):
        return None
    return m.group(0).strip(), m.group("prefix").rstrip(":").strip()
