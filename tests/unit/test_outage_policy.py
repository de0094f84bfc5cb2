"""Which errors mean the database is away, and how long a service waits before it looks again."""

from __future__ import annotations

import asyncpg
import pytest

from newsflow.adapters.postgres import is_unavailable
from newsflow.app.outages import MAX_WAIT_S, backoff_s


def test_the_wait_doubles_up_to_its_cap() -> None:
    assert [backoff_s(n) for n in range(7)] == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    assert backoff_s(10_000) == MAX_WAIT_S


def raised_from(cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise RuntimeError("the pipeline committer stopped") from exc
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.InterfaceError("connection is closed"),
        TimeoutError(),
    ],
)
def test_outages_are_recognised_directly_and_through_the_errors_they_caused(exc: BaseException) -> None:
    assert is_unavailable(exc)
    assert is_unavailable(raised_from(exc))


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.UndefinedTableError('relation "newsflow.events" does not exist'),
        asyncpg.UniqueViolationError("duplicate key"),
        ValueError("a bug"),
        RuntimeError("injected commit failure"),
    ],
)
def test_errors_of_the_statement_or_the_code_are_not_outages(exc: BaseException) -> None:
    assert not is_unavailable(exc)
    assert not is_unavailable(raised_from(exc))
