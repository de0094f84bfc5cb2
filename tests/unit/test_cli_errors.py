"""Each failure of a command says what went wrong and what to do, and names only what the command reaches."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg
from aiokafka.errors import KafkaConnectionError

from newsflow.app.cli_errors import explain
from newsflow.settings import Settings

SETTINGS = Settings(database_url="postgresql://owner:S3cretPW@db:5432/newsflow", kafka_bootstrap="kafka:9092")


def test_an_unreachable_database_names_the_masked_url_and_what_to_set() -> None:
    said = explain("stories", ConnectionRefusedError(111, "Connect call failed"), SETTINGS)
    assert said is not None and said.startswith("newsflow stories: cannot use PostgreSQL at")
    assert "owner:***@db:5432" in said and "NEWSFLOW_DATABASE_URL" in said
    assert "S3cretPW" not in said and "broker" not in said


def test_an_unreachable_broker_names_the_bootstrap_and_not_the_database() -> None:
    said = explain("publish", KafkaConnectionError("Unable to bootstrap"), SETTINGS)
    assert said is not None and "kafka:9092" in said and "NEWSFLOW_KAFKA_BOOTSTRAP" in said
    assert "PostgreSQL" not in said and "DATABASE_URL" not in said


def test_a_missing_file_is_a_file_problem_only() -> None:
    said = explain("eval", FileNotFoundError(2, "No such file or directory", "/data/x.json"), SETTINGS)
    assert said == "newsflow eval: No such file or directory: /data/x.json"


def test_a_missing_schema_says_to_migrate() -> None:
    said = explain("stories", asyncpg.UndefinedTableError('relation "dashboard.stories" does not exist'), SETTINGS)
    assert said is not None and "newsflow migrate" in said


def test_a_bug_is_not_explained_away() -> None:
    assert explain("stories", KeyError("headline"), SETTINGS) is None
    assert explain("inspect", ConnectionRefusedError(111, "refused"), SETTINGS) is None  # inspect reaches nothing


def test_a_missing_path_argument_is_named_without_any_connection_hint() -> None:
    for command in (["inspect", "/nonexistent.txt"], ["publish", "/nonexistent.txt"]):
        done = subprocess.run(
            [sys.executable, "-m", "newsflow", *command],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert "no such file or directory: /nonexistent.txt" in done.stderr
        assert "NEWSFLOW_" not in done.stderr and "Traceback" not in done.stderr
