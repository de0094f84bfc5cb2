"""structlog configuration: JSON lines for machines, colour for people at a terminal.

Libraries that log through the standard library (asyncpg's pool retrying its
connections during an outage, aiokafka's group coordinator) go through the same
renderer and the same masking, at warning and above unless the level is debug.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

import structlog

from newsflow.redaction import EventMasker


def configure_logging(
    fmt: str = "auto", level: str = "info", secrets: Iterable[str] = (), libraries: str = "warning"
) -> None:
    """Configure structlog for this process; ``secrets`` (and any URL password) never reach a line.

    ``libraries``: the lowest level of standard-library records shown (``critical`` for a one-shot
    command, whose own message says what failed).
    """
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    masker = EventMasker(secrets)
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            masker,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _route_standard_logging("debug" if level.lower() == "debug" else libraries, stamp, masker, renderer)


def _route_standard_logging(level: str, *tail: structlog.typing.Processor) -> None:
    stamp, masker, renderer = tail
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name, stamp],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            masker,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.getLevelNamesMapping()[level.upper()])
