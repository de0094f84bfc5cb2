"""Language stage: ISO 639-1 code with a confidence, or ``und`` when the text cannot tell.

py3langid (langid.py's model, 97 languages, shipped inside the wheel, so nothing
is downloaded) won on accuracy over long texts among the offline detectors
measured here (docs/enrichment.md). The rule for ``und``: fewer than
``MIN_LETTERS`` letters, a normalized probability under ``MIN_CONFIDENCE``, or a
label that is not a two-letter ISO 639-1 code (the model also knows a few
ISO 639-3 ones). URLs are removed first: they read as English.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version

from py3langid.langid import MODEL_FILE, LanguageIdentifier

STAGE_NAME = "language"
STAGE_VERSION = "1"
DETECTOR = f"py3langid@{version('py3langid')}"
UNDETERMINED = "und"
MIN_LETTERS = 10
MIN_CONFIDENCE = 0.6
MAX_CHARS = 20_000  # the first ~3,000 words decide; longer texts only cost time
_URL = re.compile(r"https?://\S+|www\.\S+")


@dataclass(frozen=True)
class Language:
    code: str
    confidence: float


@cache
def _identifier() -> LanguageIdentifier:
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect(text: str) -> Language:
    text = _URL.sub(" ", text[:MAX_CHARS])
    if sum(ch.isalpha() for ch in text) < MIN_LETTERS:
        return Language(UNDETERMINED, 0.0)
    code, confidence = _identifier().classify(text)
    confidence = round(float(confidence), 4)
    if confidence < MIN_CONFIDENCE or len(code) != 2:
        return Language(UNDETERMINED, confidence)
    return Language(code, confidence)


def detect_article(title: str | None, text: str) -> Language:
    return detect(f"{title}\n\n{text}" if title else text)
