"""Character-level normalization shared by every text the cleaner touches.

Order matters: mojibake is repaired first (ftfy needs the original bytes'
shape), then HTML entities are decoded, then invisible and control characters
go, and whitespace is collapsed last.
"""

from __future__ import annotations

import html
import re
import unicodedata

import ftfy

_FTFY = ftfy.TextFixerConfig(
    unescape_html=False,  # done below, also when the text contains "<"
    uncurl_quotes=False,  # quote style is the writer's, not an encoding error
    fix_character_width=False,  # fullwidth forms are legitimate in CJK text
    explain=False,
    normalization="NFC",
)
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u200e\u200f\u2060\u2061-\u2064\ufeff\u00ad\u202a-\u202e\u2066-\u2069]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_LINE_BREAKS = re.compile(r"\r\n|\r|[\u2028\u2029\x85\x0b\x0c]")
_KEY_JUNK = re.compile(r"[\W_]+")


def repair(text: str) -> str:
    """Mojibake repair, HTML entities, NFC, and the removal of invisible and control characters."""
    text = _LINE_BREAKS.sub("\n", text)
    text = ftfy.fix_text(text, _FTFY)
    if "&" in text:
        text = _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub("", text)
    return unicodedata.normalize("NFC", text)


def collapse_spaces(line: str) -> str:
    return _SPACES.sub(" ", line).strip()


def normalize_line(line: str) -> str:
    """One display line: repaired and with whitespace collapsed (titles, metadata values)."""
    return collapse_spaces(repair(line))


def line_key(line: str) -> str:
    """Comparison key of a line: case, punctuation and spacing do not matter."""
    return _KEY_JUNK.sub(" ", line.casefold()).strip()


def words(line: str) -> int:
    return len(line.split())
