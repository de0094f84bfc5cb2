"""No secret in a log line, an error or a status line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from newsflow.redaction import mask

SECRET = "LongS3cretPassw0rd"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "connect failed: postgresql://u:S3cretPW@db:5432/newsflow (refused)",
            "connect failed: postgresql://u:***@db:5432/newsflow (refused)",
        ),
        ("dsn=postgres://app:p%40ss@10.0.0.1/x?sslmode=require", "dsn=postgres://app:***@10.0.0.1/x?sslmode=require"),
        ("two: a://x:1@h b://y:2@h", "two: a://x:***@h b://y:***@h"),
        ("postgresql://postgres:@/db?host=/tmp", "postgresql://postgres:@/db?host=/tmp"),
        ("broker tcp://127.0.0.1:9092 up", "broker tcp://127.0.0.1:9092 up"),
        (f"password authentication failed ({SECRET})", "password authentication failed (***)"),
        ("role newsflow_writer with password writer", "role newsflow_writer with password writer"),
    ],
)
def test_masking(text: str, shown: str) -> None:
    assert mask(text, [SECRET, "writer"]) == shown


def test_log_lines_and_logged_exceptions_are_masked() -> None:
    """The real logging setup: a URL password and a configured secret, in fields and in a rendered traceback."""
    script = f"""
import structlog
from newsflow.logs import configure_logging
configure_logging("json", "info", [{SECRET!r}])
log = structlog.get_logger()
log.info("connecting", url="postgresql://u:pw1234@db/x", nested={{"dsn": "postgresql://u:pw1234@db/x"}})
try:
    raise ConnectionError("cannot reach postgresql://owner:{SECRET}@db/x")
except ConnectionError:
    log.exception("failed", hint="password is {SECRET}")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [line["event"] for line in lines] == ["connecting", "failed"]
    assert "pw1234" not in done.stderr and SECRET not in done.stderr
    assert lines[0]["url"] == "postgresql://u:***@db/x"
    assert "owner:***@db/x" in lines[1]["exception"]


def test_library_log_records_are_json_lines_and_masked() -> None:
    """asyncpg and aiokafka log through the standard library: the same renderer and masking, warnings and up."""
    script = f"""
import logging
from newsflow.logs import configure_logging
configure_logging("json", "info", [{SECRET!r}])
logging.getLogger("aiokafka.consumer").info("chatter below warning")
try:
    raise ConnectionRefusedError("postgresql://owner:{SECRET}@db/x refused")
except ConnectionRefusedError:
    logging.getLogger("asyncpg.pool").warning("Failed to restore the pool connection floor", exc_info=True)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(line["logger"], line["level"]) for line in lines] == [("asyncpg.pool", "warning")]
    assert SECRET not in done.stderr
    assert "owner:***@db/x" in lines[0]["exception"]


def test_the_daemon_waiting_for_an_unreachable_database_logs_no_secret(tmp_path: object) -> None:
    env = {
        **os.environ,
        "NEWSFLOW_DATABASE_URL": f"postgresql://owner:{SECRET}@127.0.0.1:1/newsflow",
        "NEWSFLOW_WRITER_PASSWORD": "AnotherLongWriterSecret",
        "NEWSFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "NEWSFLOW_LOG_FORMAT": "json",
        "NEWSFLOW_STATE_DIR": str(tmp_path),
    }
    daemon = subprocess.Popen(
        [sys.executable, "-m", "newsflow", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(120, daemon.kill)  # a hung daemon fails the test instead of hanging it
    watchdog.start()
    seen: list[str] = []
    try:
        assert daemon.stderr is not None
        for line in daemon.stderr:  # until the outage is logged, or the daemon exits
            seen.append(line)
            if "db.unavailable" in line:
                break
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=60)
        watchdog.cancel()
    logged = "".join(seen) + err
    assert daemon.returncode == 0, logged
    assert "db.unavailable" in logged
    assert SECRET not in out + logged and "AnotherLongWriterSecret" not in out + logged
