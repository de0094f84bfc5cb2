"""Words for counts in what the command line prints."""

from __future__ import annotations


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """``1 article``, ``2 articles``; ``plural`` for nouns that do not just take an s."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"
