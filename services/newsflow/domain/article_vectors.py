"""The multilingual text signal: one dense vector per article version, for the story clusterer.

WordLlama's ``l2_supercat`` static token embeddings (256 dimensions, 16 MB of weights and its
tokenizer inside the ``wordllama`` wheel): an average of token vectors, so the cost is a
tokenizer pass and a matrix sum (about 3 ms per article). Its vocabulary is a multilingual LLM's,
so reports of one event in different languages land near each other (docs/stories.md has the
figures). ``WordLlama.load`` looks in the package's own folder first; ``disable_download`` makes a
missing file an error instead of a download.

A vector travels in its event as base64 of little-endian float16 (512 bytes, 684 characters);
float16 keeps cosines to about 1e-3, far below what the clusterer's thresholds can tell apart.
"""

from __future__ import annotations

import base64
import math
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

STAGE_NAME = "vectors"
STAGE_VERSION = "1"
CONFIG = "l2_supercat"
DIMS = 256
MODEL = f"wordllama-{CONFIG}-{DIMS}@{version('wordllama')}"
LEAD_WORDS = 200  # the title and the body's first words are embedded: the event is told there
_DTYPE = np.dtype("<f2")

Vector = tuple[float, ...]


@cache
def _model() -> Any:
    import wordllama

    return wordllama.WordLlama.load(
        config=CONFIG, dim=DIMS, cache_dir=Path(wordllama.__file__).parent, disable_download=True
    )


def warm_up() -> None:
    """Load the weights now (a stage worker does this at start) instead of on the first article."""
    _model()


def embed_input(title: str | None, text: str) -> str:
    """What is embedded: the title and the first ``LEAD_WORDS`` words of the body."""
    lead = " ".join(text.split()[:LEAD_WORDS])
    return f"{title}\n{lead}" if title else lead


def embed(title: str | None, text: str) -> Vector:
    """The article's unit vector (all zeros for a text with no known token)."""
    raw = np.asarray(_model().embed([embed_input(title, text)], norm=True)[0], dtype=np.float32)
    return unit(tuple(float(x) for x in raw.astype(_DTYPE)))


def unit(vector: Vector) -> Vector:
    norm = math.sqrt(sum(x * x for x in vector))
    return tuple(x / norm for x in vector) if norm > 0 else vector


def encode(vector: Vector) -> str:
    return base64.b64encode(np.asarray(vector, dtype=_DTYPE).tobytes()).decode("ascii")


def decode(encoded: str) -> Vector:
    """The unit vector an event carries (renormalised: float16 rounding moves the norm slightly)."""
    return unit(tuple(float(x) for x in np.frombuffer(base64.b64decode(encoded), dtype=_DTYPE)))
