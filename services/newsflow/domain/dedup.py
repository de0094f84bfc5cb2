"""Dedup keys: an exact key of the normalized body, and a MinHash signature for near duplicates.

Near duplicates are the same text published twice: a wire story under other
site chrome, a truncated syndication with a "read more" line, a lightly edited
copy. Separately written articles that quote the same sentences are not.

Parameters (measured on ~700 real articles with generated copies and 1,676
same-event pairs as hard negatives; see docs/enrichment.md):

- shingles: word 5-grams of the normalized text, lines under 8 words left out
  (short lines are what chrome and teasers are made of);
- MinHash: 128 permutations, seed 1, datasketch's ``affine32`` scheme;
- candidates: 32 LSH bands of 2 rows, stored in PostgreSQL;
- decision: estimated Jaccard ≥ 0.5, or Jaccard ≥ 0.2 with the shorter text
  at least 70 % contained in the longer (a truncated copy has a low Jaccard but
  a high containment), when the shorter has at least 40 shingles.

Every one of these is part of what a stored signature means: changing any of
them needs a new ``SIGNATURE_VERSION`` (and re-keying).
"""

from __future__ import annotations

import hashlib
import re
import struct
import unicodedata
from dataclasses import dataclass

import numpy as np
from datasketch import MinHash

STAGE_NAME = "dedup"
STAGE_VERSION = "1"
SIGNATURE_VERSION = 1
SHINGLE_WORDS = 5
MIN_LINE_WORDS = 8
NUM_PERM = 128
SEED = 1
SCHEME = "affine32"
BANDS = 32
ROWS = 2
NEAR_JACCARD = 0.5
CONTAINED_JACCARD = 0.2
CONTAINMENT = 0.7
MIN_CONTAINED_SHINGLES = 40

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_QUOTES = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u2035\u02bc`\u00b4", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb\u2039\u203a", '"'),
    }
)
_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class DedupKey:
    exact_key: str
    signature: bytes  # NUM_PERM little-endian uint32
    shingle_count: int
    bands: tuple[int, ...]  # signed 64-bit, one per band, for a PostgreSQL bigint index


@dataclass(frozen=True)
class Similarity:
    jaccard: float
    containment: float

    @property
    def near_duplicate(self) -> bool:
        return self.jaccard >= NEAR_JACCARD or (self.jaccard >= CONTAINED_JACCARD and self.containment >= CONTAINMENT)


def normalize(text: str) -> str:
    """Case, quote style, compatibility forms and whitespace do not make a different text."""
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).translate(_QUOTES).casefold()
    return _WS.sub(" ", text).strip()


def exact_key(text: str) -> str:
    return f"v{SIGNATURE_VERSION}:" + hashlib.sha256(normalize(text).encode("utf-8")).hexdigest()


def shingles(text: str) -> set[bytes]:
    lines = [line for line in text.splitlines() if len(_WORD.findall(line)) >= MIN_LINE_WORDS]
    tokens = _WORD.findall(normalize("\n".join(lines) if lines else text))
    if len(tokens) < SHINGLE_WORDS:
        return {" ".join(tokens).encode("utf-8")} if tokens else set()
    return {" ".join(tokens[i : i + SHINGLE_WORDS]).encode("utf-8") for i in range(len(tokens) - SHINGLE_WORDS + 1)}


def _band_hash(band: int, values: np.ndarray) -> int:
    digest = hashlib.blake2b(struct.pack("<H", band) + values.astype("<u4").tobytes(), digest_size=8).digest()
    return int(struct.unpack("<q", digest)[0])


def dedup_key(text: str) -> DedupKey:
    grams = shingles(text)
    mh = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME)
    if grams:
        mh.update_batch(sorted(grams))
    values = mh.hashvalues.astype(np.uint32)
    return DedupKey(
        exact_key=exact_key(text),
        signature=values.astype("<u4").tobytes(),
        shingle_count=len(grams),
        bands=tuple(_band_hash(b, values[b * ROWS : (b + 1) * ROWS]) for b in range(BANDS)),
    )


def similarity(a: bytes, a_shingles: int, b: bytes, b_shingles: int) -> Similarity:
    """Jaccard estimated from two signatures; containment of the shorter text derived from it."""
    va, vb = np.frombuffer(a, dtype="<u4"), np.frombuffer(b, dtype="<u4")
    j = float(np.count_nonzero(va == vb)) / NUM_PERM
    shorter = min(a_shingles, b_shingles)
    if j <= 0 or shorter < MIN_CONTAINED_SHINGLES:
        return Similarity(j, 0.0)
    return Similarity(j, min(1.0, j * (a_shingles + b_shingles) / ((1 + j) * shorter)))
