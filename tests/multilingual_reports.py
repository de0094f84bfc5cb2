"""The multilingual fixtures the tests use: reports of the seeds' story in other languages, labelled texts
in languages with no model, and the seeds' registry as the projector would build it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsflow.domain import entities
from newsflow.domain.known_names import KnownNames, from_rows
from newsflow.domain.name_keys import registry_keys
from newsflow.samples import SEEDS
from seed_articles import cleaned, seed_message

FIXTURES = Path(__file__).parent / "fixtures"
REPORTS = json.loads((FIXTURES / "multilingual_reports.json").read_text())
NAME_PAIRS = json.loads((FIXTURES / "cross_language_names.json").read_text())["pairs"]


def seed_registry(min_articles: int) -> list[tuple[str, str, list[str]]]:
    """(name, type, aliases) of the seeds' registry entities seen in ``min_articles`` or more, most seen first.

    Entities merge on ``name_keys.registry_keys``, first come first served, as ``entity_registry`` does.
    """
    registry: list[dict[str, Any]] = []
    claimed: dict[tuple[str, str], int] = {}
    for name in sorted(p.name for p in SEEDS.glob("*.txt")):
        for e in entities.extract(cleaned(seed_message(name)).text, "en").entities:
            keys = registry_keys(e["name"], e["aliases"], e["type"])
            index = next((claimed[(e["type"], k)] for k in keys if (e["type"], k) in claimed), None)
            if index is None:
                index = len(registry)
                registry.append({"name": e["name"], "type": e["type"], "aliases": set(), "articles": 0})
            for k in keys:
                claimed.setdefault((e["type"], k), index)
            registry[index]["aliases"] |= {e["name"], *e["aliases"]}
            registry[index]["articles"] += 1
    ranked = sorted((r for r in registry if r["articles"] >= min_articles), key=lambda r: -r["articles"])
    return [(r["name"], r["type"], sorted(r["aliases"])) for r in ranked]


@dataclass(frozen=True)
class Quality:
    found: int
    correct: int
    labelled: int
    recalled: int

    @property
    def precision(self) -> float:
        return self.correct / self.found if self.found else 1.0

    @property
    def recall(self) -> float:
        return self.recalled / self.labelled if self.labelled else 1.0


def known_name_quality(known: KnownNames) -> Quality:
    """The pass on the labelled texts: a found entity is right when every spelling of it found in the text is
    a labelled name of its type."""
    found = correct = labelled = recalled = 0
    for case in REPORTS["fallback_labels"]:
        text = case["text"]
        gold = {(name, kind) for name, kind in case["entities"]}
        hits: set[tuple[str, str]] = set()
        for e in known.find(text).entities:
            spellings = {s for s in (e["name"], *e["aliases"]) if s in text}
            found += 1
            if spellings and all((s, e["type"]) in gold for s in spellings):
                correct += 1
                hits |= {(s, e["type"]) for s in spellings}
        labelled += len(gold)
        recalled += len(hits & gold)
    return Quality(found, correct, labelled, recalled)


def seed_known_names(min_articles: int) -> KnownNames:
    return from_rows(seed_registry(min_articles))
