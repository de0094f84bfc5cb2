"""The words a story is recognised by: tokens of the title and body, without stop words."""

from __future__ import annotations

import re
from collections import Counter

_TOKEN = re.compile(r"[^\W\d_][\w'’-]+")
_STOP = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having he
    her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor
    not now of off on once only or other our ours ourselves out over own said same says she should so some such
    than that the their theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours yourself
    yourselves one two new year years also like told according mr ms mrs""".split()
)


def tokens(text: str) -> list[str]:
    return [t for t in (w.casefold() for w in _TOKEN.findall(text)) if t not in _STOP and len(t) > 2]


def terms(title: str | None, text: str) -> Counter[str]:
    tokens = [t.casefold() for t in _TOKEN.findall(f"{title or ''} {title or ''} {text}")]
    return Counter(t for t in tokens if t not in _STOP and len(t) > 2)
