"""Keys under which the entity registry finds a name, across the languages it is spelled in.

Two kinds, tried in this order:

1. the folded name (``entities.fold``: accents, case and punctuation do not
   matter): "Vladímir Putin" = "Vladimir Putin", "Uzbekistán" = "Uzbekistan";
2. a spelling key, ``~`` and the name transliterated to ASCII (``anyascii``,
   so Cyrillic and Greek spellings join too) with the usual differences between
   English, French, German and Spanish transcriptions of one sound written the
   same way: "Wladimir Putin", "Vladimir Poutine" → ``~vladimir putin``,
   "Ouzbékistan" → ``~usbekistan``, "Sergej Lawrow" = "Sergueï Lavrov".

A spelling key keeps every word and the number of words, so "Kim Jong-un" and
"Kim Jong-il", "George W. Bush" and "Jeb Bush" stay apart, and so do names of
different types. It is not made for short names (under ``MIN_SPELLING_LETTERS``
letters: "Xi", "Mali") or acronyms, where one letter more or less is another
entity. A final mute "e" comes off ("Poutine", "Russie"), a final "a" off a
place ("Russia", "Samarcanda"), but nothing off a person's first name ("Jean"
and "Jeanne", "Maria" and "Mario" are two people). Measured on a hand-labelled list of cross-language
name pairs (tests/fixtures/cross_language_names.json, docs/enrichment.md).

Translations ("Germany" / "Allemagne", "Beijing" / "Pékin") share no key; they
need other evidence than the name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from anyascii import anyascii

from newsflow.domain.entities import fold

SPELLING_KEY_PREFIX = "~"
MIN_SPELLING_LETTERS = 5

# In order: each rewrites a spelling of one language to the form the others share.
_REWRITES = (
    ("tsch", "ch"),  # de Gorbatschow
    ("sch", "sh"),  # de Schawkat
    ("tch", "ch"),  # fr Gorbatchev
    ("ch", "sh"),  # fr Chavkat; en "ch" follows, the same on both sides
    ("kh", "h"),  # en Mikhail, es Mijaíl → mihail
    ("dj", "j"),  # fr Tadjikistan
    ("ou", "u"),  # fr Poutine, Ouzbékistan
    ("gue", "ge"),  # fr Sergueï
    ("gui", "gi"),
    ("w", "v"),  # de Wladimir, Lawrow
    ("ph", "f"),
    ("qu", "k"),  # fr Turquie
    ("ck", "k"),
    ("c", "k"),  # fr Samarcande
    ("z", "s"),  # de Usbekistan
    ("j", "y"),  # de Sergej, Tokajew
    ("y", "i"),  # en Zelenskyy, Mirziyoyev
    ("ie", "i"),
    ("ei", "i"),
)
_DOUBLED = re.compile(r"(.)\1+")
_WORD = re.compile(r"[^a-z0-9]+")


def _respell(word: str, final_vowels: str) -> str:
    for written, shared in _REWRITES:
        word = word.replace(written, shared)
    word = _DOUBLED.sub(r"\1", word)
    if len(word) > 4 and word[-1] in final_vowels:
        word = word[:-1]  # fr Poutine, Samarcande, Russie; es Samarcanda; en Russia, Georgia
    return word


def spelling_key(name: str, entity_type: str) -> str | None:
    """The name's spelling key, or None for a name too short or an acronym."""
    if name.isupper() and " " not in name:
        return None
    words = [w for w in _WORD.split(anyascii(name).casefold()) if w]
    if sum(len(w) for w in words) < MIN_SPELLING_LETTERS:
        return None
    # A final mute "e" comes off every word but a person's first name; a final "a" off place names only.
    final_vowels = "ae" if entity_type == "place" else "e"
    first_name = entity_type == "person" and len(words) > 1
    respelled = [_respell(w, "" if first_name and i == 0 else final_vowels) for i, w in enumerate(words)]
    return SPELLING_KEY_PREFIX + " ".join(respelled)


def registry_keys(name: str, aliases: Iterable[str], entity_type: str) -> list[str]:
    """Every key of an entity, in the order a look-up tries them: folded names first, then spelling keys."""
    names = [name, *aliases]
    folded = [fold(n) for n in names]
    spelled = [spelling_key(n, entity_type) for n in names]
    return [k for k in dict.fromkeys([*folded, *spelled]) if k]


def same_entity(a: str, b: str, entity_type: str) -> bool:
    """Whether the registry puts two names of one type on one entity when each comes on its own."""
    return bool(set(registry_keys(a, (), entity_type)) & set(registry_keys(b, (), entity_type)))
