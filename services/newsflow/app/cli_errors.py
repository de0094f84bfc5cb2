"""What the command line says when a command fails: what went wrong and what to do, nothing else.

A command names only what it reaches: a missing file is not a database
problem, and ``inspect`` or ``eval`` reach neither the database nor the broker.
Every message is masked (no password reaches the terminal).
"""

from __future__ import annotations

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaError

from newsflow.adapters import postgres
from newsflow.adapters.metric_files import MetricsPortInUse
from newsflow.redaction import mask, redacted_url
from newsflow.settings import Settings

DATABASE = {"stories", "migrate", "projections", "chrome", "reprocess", "run"}
BROKER = {"publish", "run"}

START_HINT = "start newsflow with `make run` (or `newsflow run --embedded`)"


def explain(command: str, exc: BaseException, settings: Settings) -> str | None:
    """The message for an expected failure of ``command``; None for a bug (its traceback is logged)."""
    said = _explain(command, exc, settings)
    return None if said is None else f"newsflow {command}: " + mask(said, settings.secrets())


def _explain(command: str, exc: BaseException, settings: Settings) -> str | None:
    if isinstance(exc, MetricsPortInUse):
        return str(exc)
    if isinstance(exc, KafkaConnectionError) or (isinstance(exc, KafkaError) and command in BROKER):
        return (
            f"cannot reach the Kafka broker at {settings.kafka_bootstrap} ({_said(exc)});\n"
            f"  {START_HINT}, or set NEWSFLOW_KAFKA_BOOTSTRAP to your brokers"
        )
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return (
            f"PostgreSQL at {redacted_url(settings.database_url)} refused the login ({_said(exc)});\n"
            "  check the user and password in NEWSFLOW_DATABASE_URL and NEWSFLOW_WRITER_PASSWORD"
        )
    if isinstance(exc, asyncpg.UndefinedTableError | asyncpg.InvalidSchemaNameError):
        return f"the database has no newsflow tables yet ({_said(exc)});\n  run `newsflow migrate`, or start the daemon"
    if command in DATABASE and (postgres.is_unavailable(exc) or isinstance(exc, asyncpg.PostgresError)):
        return (
            f"cannot use PostgreSQL at {redacted_url(settings.database_url)} ({_said(exc)});\n"
            f"  {START_HINT}, or set NEWSFLOW_DATABASE_URL"
        )
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or _said(exc)}: {exc.filename}"
    return None


def _said(exc: BaseException) -> str:
    text, name = str(exc), type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name
