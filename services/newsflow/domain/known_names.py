"""Entities for a language with no model: the names the entity registry already knows, found in the text.

One exact-match pass (an Aho–Corasick automaton, ``pyahocorasick``) over the
text for every canonical name and alias of a registry entity seen in at least
a few articles. A match counts only on word boundaries and with the name's own
capitals; accents do not matter ("Vladímir Putin" is "Vladimir Putin",
"Uzbekistán" is "Uzbekistan"). Each match is the registry entity it names,
under its canonical name, with the spelling found as an alias, so the registry
puts the article's mentions on that entity.

Left out for precision: names of fewer than ``MIN_NAME_CHARS`` characters
unless all capitals ("SCO", "EU"), names with no capital letter, and one-word
names that are also a title or an article word in a supported language.
Where two known names overlap, the longer wins ("Xi Jinping" over "Xi").

It finds only what was seen before, under a spelling seen before: a name new
to the registry, or spelled in a way no earlier article used ("Samarcanda"),
is missed. Its precision, measured on hand-labelled reports in languages with
no model, is in docs/enrichment.md.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import ahocorasick

from newsflow.domain.entities import Entities, Entity, fold

VERSION = "1"
MIN_NAME_CHARS = 4
_STOP_NAMES = frozenset(
    fold(w)
    for w in """The Le La Les El Los Die Der Das Un Une Ein Eine President Président Presidente Präsident Minister
    Ministre Ministro""".split()
)


@dataclass(frozen=True)
class KnownEntity:
    """A registry entity as the pass sees it: canonical name, type and every spelling of it."""

    name: str
    type: str
    spellings: tuple[str, ...]


def _strip_accents(text: str) -> str:
    """``text`` without accents, one character for one, so offsets stay those of ``text``."""
    out = []
    for c in text:
        base = "".join(b for b in unicodedata.normalize("NFKD", c) if not unicodedata.combining(b))
        out.append(base if len(base) == 1 else c)
    return "".join(out)


def _usable(spelling: str) -> bool:
    if not any(c.isupper() for c in spelling) or fold(spelling) in _STOP_NAMES:
        return False
    return len(spelling) >= MIN_NAME_CHARS or (spelling.isupper() and len(spelling) >= 2)


class KnownNames:
    """The pass over one snapshot of the registry; ``model`` names it in the entity events it produces."""

    def __init__(self, entities: Iterable[KnownEntity], snapshot: str = "") -> None:
        self.model = f"known-names@{VERSION}" + (f"/{snapshot}" if snapshot else "")
        self._automaton: Any = ahocorasick.Automaton()
        self.size = 0
        for index, entity in enumerate(entities):
            for spelling in {" ".join(s.split()) for s in (entity.name, *entity.spellings)}:
                key = _strip_accents(spelling)
                if _usable(spelling) and not self._automaton.exists(key):
                    self._automaton.add_word(key, (index, entity.name, entity.type, len(key)))
                    self.size += 1
        if self.size:
            self._automaton.make_automaton()

    def find(self, text: str) -> Entities:
        """The known entities named in ``text`` (``supported``: the pass ran, even if it found none)."""
        if not self.size:
            return Entities(True, [], self.model)
        plain = _strip_accents(text)
        hits: list[tuple[int, int, str, str]] = []  # start, end, name, type
        for last, (_, name, kind, length) in self._automaton.iter(plain):
            start, end = last - length + 1, last + 1
            if _on_word_boundaries(plain, start, end):
                hits.append((start, end, name, kind))
        found: dict[tuple[str, str], Entity] = {}
        covered_to = -1
        for start, end, name, kind in sorted(hits, key=lambda h: (h[0], -(h[1] - h[0]))):
            if start < covered_to:
                continue  # inside a longer name already taken
            covered_to = end
            entity = found.setdefault((name, kind), Entity(name, kind, first_offset=start))
            entity.count += 1
            entity.aliases.add(text[start:end])
        ordered = sorted(found.values(), key=lambda e: (-e.count, e.first_offset))
        return Entities(True, [e.as_payload() for e in ordered], self.model)


def _on_word_boundaries(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return not (before.isalnum() or after.isalnum())


def from_rows(rows: Sequence[tuple[str, str, Sequence[str]]], snapshot: str = "") -> KnownNames:
    """A pass over registry rows (name, type, aliases), most mentioned first: a spelling two entities share
    belongs to the first."""
    return KnownNames((KnownEntity(name, kind, tuple(aliases)) for name, kind, aliases in rows), snapshot)
