"""Settings: no secret in an error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from newsflow.redaction import redacted_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:S3cretPW@db:5432/newsflow", "postgresql://u:***@db:5432/newsflow"),
        ("postgresql://u:p%40ss@db/newsflow?sslmode=require", "postgresql://u:***@db/newsflow?sslmode=require"),
        ("postgresql://u@db/newsflow", "postgresql://u@db/newsflow"),
        ("postgresql:///newsflow?host=/tmp", "postgresql:///newsflow?host=/tmp"),
    ],
)
def test_a_password_in_the_database_url_is_redacted(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def test_a_connection_error_does_not_print_the_password() -> None:
    env = {**os.environ, "NEWSFLOW_DATABASE_URL": "postgresql://u:S3cretPW@127.0.0.1:1/newsflow"}
    done = subprocess.run(
        [sys.executable, "-m", "newsflow", "stories"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "u:***@127.0.0.1:1/newsflow" in done.stderr
    assert "S3cretPW" not in done.stderr + done.stdout


def test_status_says_what_it_cannot_reach_and_prints_no_password(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "NEWSFLOW_DATABASE_URL": "postgresql://u:S3cretPW@127.0.0.1:1/newsflow",
        "NEWSFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "NEWSFLOW_STATE_DIR": str(tmp_path),
    }
    for extra in ([], ["--json"]):
        done = subprocess.run(
            [sys.executable, "-m", "newsflow", "status", *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert "S3cretPW" not in done.stderr + done.stdout
    assert json.loads(done.stdout)["daemon"]["readiness"] == "not running"
    assert json.loads(done.stdout)["database_reachable"] is False
