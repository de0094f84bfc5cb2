"""Secrets never reach a log line, an error or a status line: passwords in URLs and configured passwords.

Log events go through ``mask_event`` (a structlog processor, installed by
``logs.configure_logging``), after exceptions are rendered to text, so a
driver's error that repeats a DSN is masked too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# scheme://user:password@ — the password is anything up to the last '@' before the host.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)(?P<password>[^\s/?#]*)@", re.IGNORECASE)

# Passwords this short are words ("writer" is the writer role's default): masking them would garble
# every line that names the role. They are still masked wherever they appear in a URL.
MIN_SECRET_LENGTH = 8


def redacted_url(url: str) -> str:
    """``url`` fit for a log or error line: the password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URL password and every listed secret (of a maskable length) replaced."""
    text = _URL_PASSWORD.sub(lambda m: m["head"] + (MASK if m["password"] else "") + "@", text)
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, MASK)
    return text


def _masked(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, Mapping):
        return {k: _masked(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v, secrets) for v in value]
    if isinstance(value, BaseException):
        return mask(f"{type(value).__name__}: {value}", secrets)
    return value


class EventMasker:
    """A structlog processor: every string in the event dict, at any depth, masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(s for s in secrets if s)

    def __call__(self, logger: object, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in event.items():
            event[key] = _masked(value, self.secrets)
        return event
