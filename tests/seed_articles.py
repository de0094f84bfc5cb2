"""The sample seed articles as the tests use them: validated messages and their cleaned text."""

from __future__ import annotations

import json

from newsflow.domain.cleaning.cleaner import Cleaned, clean_article
from newsflow.domain.contract import RawArticleV1
from newsflow.samples import SEEDS

MANIFEST = json.loads((SEEDS / "manifest.json").read_text())["files"]


def seed_message(name: str, **overrides: object) -> RawArticleV1:
    return RawArticleV1.model_validate({**MANIFEST[name], "text": (SEEDS / name).read_text(), **overrides})


def cleaned(msg: RawArticleV1, learned: frozenset[str] = frozenset()) -> Cleaned:
    result = clean_article(msg, learned)
    assert isinstance(result, Cleaned), result
    return result


def long_text() -> str:
    """About 20,000 characters of real article text: the five seeds, cleaned, one after another."""
    names = sorted(p.name for p in SEEDS.glob("*.txt"))
    return "\n".join(cleaned(seed_message(name)).text for name in names * 2)
