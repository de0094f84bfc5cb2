"""structlog configuration: JSON lines for machines, colour for people at a terminal."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

import structlog

from newsflow.redaction import EventMasker


def configure_logging(fmt: str = "auto", level: str = "info", secrets: Iterable[str] = ()) -> None:
    """Configure structlog for this process; ``secrets`` (and any URL password) never reach a line."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            EventMasker(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
