"""Main text and metadata out of an HTML page, through trafilatura.

trafilatura is the best-scoring maintained Python extractor on both public
benchmarks (see docs/cleaning.md). Settings: precision-leaning, comments and
formatting left out, tables kept. Its cost is super-linear on some page
shapes, so callers bound it with a timeout (see newsflow.ingest.stage_runner); what
can be refused cheaply up front (absurd nesting) is refused here with its own
reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import version

import trafilatura
from trafilatura.settings import Document

EXTRACTOR = f"trafilatura@{version('trafilatura')}"
MAX_NESTING_DEPTH = 512

# Elements whose end tag is optional or that never have content: they do not nest reliably.
_NON_NESTING = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
        "param",
        "keygen",
        "command",
        "p",
        "li",
        "dt",
        "dd",
        "tr",
        "td",
        "th",
        "option",
        "optgroup",
        "thead",
        "tbody",
        "tfoot",
        "colgroup",
        "caption",
        "rt",
        "rp",
        "html",
        "head",
        "body",
    ]
)
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]{0,30})\b[^>]{0,2000}?(/?)>")


@dataclass(frozen=True)
class Extracted:
    text: str
    title: str | None
    author: str | None
    date: str | None
    sitename: str | None
    description: str | None


def nesting_depth(html: str) -> int:
    """Maximum element nesting of a page, by a linear scan of its tags (no parse)."""
    depth = deepest = 0
    for m in _TAG.finditer(html):
        if m.group(2).lower() in _NON_NESTING or m.group(3):
            continue
        if m.group(1):
            depth = max(depth - 1, 0)
        else:
            depth += 1
            deepest = max(deepest, depth)
    return deepest


def extract(html: str) -> Extracted:
    doc = trafilatura.bare_extraction(
        html,
        with_metadata=True,
        include_comments=False,
        include_tables=True,
        include_formatting=False,
        favor_precision=True,
    )
    if not isinstance(doc, Document):  # None when nothing was found; a dict only with as_dict=True
        return Extracted("", None, None, None, None, None)
    return Extracted(
        text=doc.text or "",
        title=doc.title or None,
        author=doc.author or None,
        date=doc.date or None,
        sitename=doc.sitename or None,
        description=doc.description or None,
    )
