"""Normalization stage: one clean, Unicode-normalized body text per article.

This is the first real stage of the chain. HTML goes through trafilatura's main
text extraction; scraped text is kept as is. Both then get NFC, control and
zero-width characters removed, whitespace collapsed, and title lines that merely
repeat the title dropped. Deeper chrome removal belongs to the cleaning stage.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from newsflow.domain.contract import RawArticleV1

STAGE_NAME = "normalize"
STAGE_VERSION = "1"

_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")


@dataclass(frozen=True)
class Normalized:
    title: str | None
    text: str
    word_count: int
    removed_lines: int


def normalize_line(line: str) -> str:
    line = unicodedata.normalize("NFC", line)
    line = _INVISIBLE.sub("", line)
    line = _CONTROL.sub("", line)
    return _SPACES.sub(" ", line).strip()


def _line_key(line: str) -> str:
    return re.sub(r"\W+", " ", line.casefold()).strip()


def _html_to_text(html: str) -> tuple[str, str | None]:
    import trafilatura

    doc = trafilatura.bare_extraction(html, with_metadata=True, include_comments=False, favor_precision=True)
    if doc is None:
        return "", None
    return doc.text or "", doc.title


def normalize_article(msg: RawArticleV1) -> Normalized:
    title = normalize_line(msg.title) if msg.title else None
    if msg.html and msg.html.strip():
        body, html_title = _html_to_text(msg.html)
        title = title or (normalize_line(html_title) if html_title else None)
    else:
        body = msg.text or ""
    lines = [normalize_line(line) for line in body.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    non_empty = [line for line in lines if line]
    if title is None and len(non_empty) > 1:
        title = non_empty[0]  # scraped text starts with the headline
    title_key = _line_key(title) if title else None
    kept: list[str] = []
    removed = 0
    for line in lines:
        if title_key and line and _line_key(line) == title_key:
            removed += 1
            continue
        if not line and (not kept or not kept[-1]):
            continue
        kept.append(line)
    text = "\n".join(kept).strip()
    return Normalized(title=title, text=text, word_count=len(text.split()), removed_lines=removed)
