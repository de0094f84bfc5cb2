"""The metrics endpoint of a real `newsflow run --workers 2`, scraped over HTTP while it works.

One daemon (two pipeline processes, clusterer, projector) runs for the module; its
values are compared with what the event store and the dashboard views say, the
operations dashboard's PromQL is computed from the scrapes, and the image's and
compose file's health checks are run against it. The last test kills the child
process: its counts stay, its gauges go, and the restart is counted.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from conftest import daemon_env, settings_for, wait_until
from metrics_scrape import Scraper, by_label, free_port, get, get_json, value
from newsflow.adapters import kafka, postgres
from newsflow.adapters.embedded import EmbeddedBroker, EmbeddedPostgres
from newsflow.app.publish import publish
from newsflow.samples import SEEDS
from newsflow.settings import Settings
from promql_eval import Scrape, evaluate

ROOT = Path(__file__).resolve().parents[2]
OPS_DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "newsflow-operations.json"
PARTITIONS = 4
BAD_LINES = [
    "this is not json",
    json.dumps({"url": "https://bad.invalid/1", "source": "Bad Wire"}),  # missing_field
    json.dumps({"url": "https://bad.invalid/2", "source": "Bad Wire", "fetched_at": "2022-09-15T10:00:00+00:00"}),
]
BAD_REASONS = {"invalid_json": 1, "missing_field": 1, "empty_body": 1}
SEED_COUNT = 5


@dataclass
class Run:
    settings: Settings
    port: int
    daemon: subprocess.Popen[bytes]
    scraper: Scraper
    state_dir: Path
    published: int
    first: Scrape  # before anything was published


async def _db(settings: Settings, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await postgres.connect(settings.database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _counts(settings: Settings, sql: str) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in await _db(settings, sql)}


async def _settled(run: Run) -> bool:
    """Every record applied and every reader at the log head, as the endpoint says."""
    s = await run.scraper.scrape()
    lag = by_label(s, "newsflow_consumer_lag", "partition")
    caught_up = value(s, "newsflow_reader_lag_events") == 0 and value(s, "newsflow_reader_position") > 0
    (head,) = await _db(run.settings, "SELECT coalesce(max(position), 0) AS head FROM newsflow.events")
    committed = value(s, "newsflow_stage_seconds_count", stage="commit")
    return (
        not lag
        and value(s, "newsflow_broker_up") == 1
        and committed >= run.published
        and caught_up
        and value(s, "newsflow_log_head_position") == head["head"]
        and value(s, "newsflow_stories") > 0
    )


@pytest.fixture(scope="module")
async def run(
    pg_server: EmbeddedPostgres, broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Run]:
    url = await pg_server.ensure_database(f"t_{uuid.uuid4().hex[:12]}")
    await postgres.migrate_url(url)
    settings = settings_for(broker, url)
    state_dir = tmp_path_factory.mktemp("metrics-state")
    await kafka.ensure_topics(settings.kafka_bootstrap, [(settings.raw_topic, PARTITIONS), (settings.dlq_topic, 1)])
    port = free_port()
    env = daemon_env(settings, state_dir, NEWSFLOW_METRICS_PORT=str(port), NEWSFLOW_STAGE_WORKERS="1")
    daemon = subprocess.Popen([sys.executable, "-m", "newsflow", "run", "--workers", "2"], env=env)  # noqa: ASYNC220  (killed by pid below)
    try:
        scraper = Scraper(port)

        async def ready() -> bool:
            assert daemon.poll() is None, f"the daemon exited ({daemon.returncode})"
            try:
                status, doc = await get_json(port, "/readyz")
            except OSError:
                return False  # not listening yet
            return status == 200 and doc["checks"]["partitions_assigned"] is True and _children_running(doc)

        await wait_until(ready, timeout_s=180, interval_s=0.5, what="/readyz to answer 200 with both processes up")
        first = await scraper.scrape()
        bad = tmp_path_factory.mktemp("feed") / "bad.jsonl"
        bad.write_text("\n".join(BAD_LINES) + "\n")
        published = await publish(settings.kafka_bootstrap, settings.raw_topic, [SEEDS, bad], progress=False)
        # The same five articles again: redelivered content, which adds no events.
        published += await publish(settings.kafka_bootstrap, settings.raw_topic, [SEEDS], progress=False)
        assert published == 2 * SEED_COUNT + len(BAD_LINES)
        the_run = Run(settings, port, daemon, scraper, state_dir, published, first)
        await wait_until(lambda: _settled(the_run), timeout_s=240, interval_s=1.0, what="lag 0 and readers at the head")
        await scraper.scrape()
        yield the_run
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()


def _children_running(doc: dict[str, Any]) -> bool:
    parent = doc["processes"].get("health.json", {})
    children = parent.get("children", {})
    return bool(children) and all(c["running"] for c in children.values()) and len(doc["processes"]) == 2


async def test_the_counts_move_as_the_event_store_says(run: Run) -> None:
    first, last = run.first, run.scraper.scrapes[-1]
    assert (
        value(first, "newsflow_messages_applied_total") == 0 and value(first, "newsflow_messages_consumed_total") == 0
    )

    events = await _counts(run.settings, "SELECT type, count(*) FROM newsflow.events GROUP BY type")
    rejections = await _counts(run.settings, "SELECT reason, count(*) FROM dashboard.rejections GROUP BY reason")
    (stories,) = await _db(run.settings, "SELECT count(*) AS n FROM projection.stories")
    checkpoints = await _counts(run.settings, "SELECT name, position FROM newsflow.checkpoints")

    assert rejections == BAD_REASONS
    assert by_label(last, "newsflow_messages_rejected_total", "reason") == rejections
    assert by_label(last, "newsflow_dead_letters_sent_total", "reason") == rejections
    rejected = sum(rejections.values())
    same_content = value(last, "newsflow_messages_skipped_total", reason="same_content")
    assert same_content == SEED_COUNT, "the seeds published again are redeliveries"
    applied = value(last, "newsflow_messages_applied_total")
    assert applied == run.published - rejected - same_content == events["ArticleReceived"] == SEED_COUNT
    assert value(last, "newsflow_messages_consumed_total") >= run.published
    # Every record fetched once reaches one commit; one fetched again after a rebalance is skipped there.
    committed = run.published + value(last, "newsflow_messages_skipped_total", reason="already_applied")
    for stage in ("decode", "clean", "entities", "commit"):
        assert value(last, "newsflow_stage_seconds_count", stage=stage) == committed, stage
    assert value(last, "newsflow_append_transaction_seconds_count") >= 1
    assert value(last, "newsflow_append_transaction_seconds_sum") > 0

    assert by_label(last, "newsflow_events_appended_total", "type") == events, "every event counted once, by type"
    decisions = by_label(last, "newsflow_story_decisions_total", "kind")
    assert decisions.get("started") == events["StoryStarted"] == stories["n"] + events.get("StoriesMerged", 0)
    assert decisions.get("assigned") == events["ArticleAssignedToStory"] == SEED_COUNT
    assert value(last, "newsflow_stories") == stories["n"]

    lag = {p: value(last, "newsflow_consumer_lag", partition=p) for p in map(str, range(PARTITIONS))}
    assert lag == dict.fromkeys(lag, 0.0) and by_label(first, "newsflow_consumer_lag", "partition") == {}
    assert by_label(last, "newsflow_reader_position", "reader") == checkpoints
    assert {"clusterer.stories", "projection.stories", "feed.stories"} <= set(checkpoints)
    assert value(last, "newsflow_reader_lag_events") == 0
    assert value(last, "newsflow_partitions_assigned") == PARTITIONS, "the two processes own every partition"
    assert value(last, "newsflow_postgres_up") == 1 and value(last, "newsflow_broker_up") == 1
    (build,) = [dict(ls) for ls in last.samples if ("__name__", "newsflow_build_info") in ls]
    assert build["version"] and build["python"] == ".".join(map(str, sys.version_info[:3]))


async def test_readyz_and_healthz_say_what_status_says(run: Run) -> None:
    status, ready = await get_json(run.port, "/readyz")
    assert status == 200 and ready["readiness"] == "ready", ready
    assert ready["checks"] == {
        "migrations_applied": True,
        "postgres_reachable": True,
        "broker_reachable": True,
        "partitions_assigned": True,
    }
    status, alive = await get_json(run.port, "/healthz")
    assert status == 200 and alive["alive"] is True and alive["stuck_loops"] == {}
    # Metric files come from the two daemon processes only, not from their stage workers.
    writers = {int(m[1]) for f in (run.state_dir / "metrics").iterdir() if (m := re.search(r"_(\d+)\.db$", f.name))}
    assert writers == {p["pid"] for p in ready["processes"].values()}
    parent_loops = alive["loops"]["health.json"]
    assert {"pipeline", "clusterer.stories", "projection.stories", "probe"} <= set(parent_loops), parent_loops
    assert set(alive["loops"]["health.child-1.json"]) == {"pipeline"}

    shown = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "newsflow", "status", "--json"],
        env=daemon_env(run.settings, run.state_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    daemon = json.loads(shown.stdout)["daemon"]
    assert daemon["readiness"] == ready["readiness"] and daemon["checks"] == ready["checks"]
    assert sorted(daemon["processes"]) == sorted(ready["processes"])
    owned = [p for snap in ready["processes"].values() for p in snap["partitions"]]
    assert sorted(owned) == list(range(PARTITIONS))


def _healthcheck_commands() -> dict[str, list[str]]:
    """The image's HEALTHCHECK and the compose file's, as argument lists."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    (image,) = re.findall(r"^HEALTHCHECK .*?CMD (\[.*\])$", dockerfile.replace("\\\n", " "), flags=re.M)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    test = compose["services"]["newsflow"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    return {"image": json.loads(image), "compose": test[1:]}


async def test_the_image_and_compose_health_checks_pass_against_the_running_daemon(run: Run) -> None:
    commands = _healthcheck_commands()
    assert "/healthz" in commands["image"][-1] and "/readyz" in commands["compose"][-1]
    for name, argv in commands.items():
        assert argv[0] == "python"
        code = argv[-1].replace(":9464/", f":{run.port}/")
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, *argv[1:-1], code],
            env={**os.environ, "NEWSFLOW_METRICS_PORT": str(run.port)},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, (name, done.stderr)
    # And a check against a port nobody serves fails, as the health check must.
    closed = commands["image"][-1]
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", closed],
        env={**os.environ, "NEWSFLOW_METRICS_PORT": str(free_port())},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0


def _ops_targets() -> list[tuple[str, dict[str, Any]]]:
    dashboard = json.loads(OPS_DASHBOARD.read_text(encoding="utf-8"))
    return [(p["title"], t) for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"]]


def _expand(expr: str, scrapes: list[Scrape]) -> str:
    """Grafana's range variables as a duration that covers every scrape of the run."""
    span = f"{math.ceil(scrapes[-1].at - scrapes[0].at) + 60}s"
    expr = expr.replace("$__rate_interval", span).replace("$__range", span)
    assert "$" not in expr, f"a variable left unexpanded in {expr}"
    return expr


def _flat(result: dict[Any, float] | float) -> dict[str, float]:
    """A result as {label values joined: value}; a single unlabelled series is keyed ''."""
    if isinstance(result, float):
        return {"": result}
    return {",".join(v for _, v in sorted(labels)): round(v, 6) for labels, v in result.items()}


async def test_every_ops_panel_shows_what_the_run_did(run: Run) -> None:
    scrapes = run.scraper.scrapes
    span_s = scrapes[-1].at - scrapes[0].at
    events = await _counts(run.settings, "SELECT type, count(*) FROM newsflow.events GROUP BY type")
    rejections = await _counts(run.settings, "SELECT reason, count(*) FROM dashboard.rejections GROUP BY reason")
    (stories,) = await _db(run.settings, "SELECT count(*) AS n FROM projection.stories")
    readers = await _counts(run.settings, "SELECT name, position FROM newsflow.checkpoints")
    per_second = {
        "consumed": None,  # fetched again after a rebalance too: at least what was published
        "applied": events["ArticleReceived"] / span_s,
        "rejected": sum(rejections.values()) / span_s,
        "skipped (redelivered)": SEED_COUNT / span_s,
    }
    decision_kinds = {"StoryStarted": "started", "ArticleAssignedToStory": "assigned", "StoriesMerged": "merged"}
    expected: dict[tuple[str, str], Any] = {
        ("Consumer lag", "A"): {"": 0.0},
        ("Applied / s", "A"): {"": round(per_second["applied"], 6)},
        ("Rejected in range", "A"): {"": float(sum(rejections.values()))},
        ("Live stories", "A"): {"": float(stories["n"])},
        ("Partitions assigned", "A"): {"": float(PARTITIONS)},
        ("PostgreSQL / broker", "A"): {"": 1.0},
        ("PostgreSQL / broker", "B"): {"": 1.0},
        ("Consumer lag by partition", "A"): {str(p): 0.0 for p in range(PARTITIONS)},
        ("Throughput", "B"): {"": round(per_second["applied"], 6)},
        ("Throughput", "C"): {"": round(per_second["rejected"], 6)},
        ("Throughput", "D"): {"": round(per_second["skipped (redelivered)"], 6)},
        ("Rejections by reason", "A"): {**dict.fromkeys(_all_reasons(scrapes[-1]), 0.0), **_floats(rejections)},
        ("Log reader lag", "A"): dict.fromkeys(readers, 0.0),
        ("Restarts in range", "A"): {"": 0.0},
        ("Restarts in range", "B"): {"": 0.0},
        ("Restarts in range", "C"): {"": 0.0},
        ("Events appended by type", "A"): {
            t: round(events.get(t, 0) / span_s, 6)
            for t in by_label_all(scrapes[-1], "newsflow_events_appended_total", "type")
        },
        ("Story decisions", "A"): {kind: round(events.get(t, 0) / span_s, 6) for t, kind in decision_kinds.items()},
    }
    seen = set()
    for title, target in _ops_targets():
        key = (title, target["refId"])
        seen.add(key)
        result = _flat(evaluate(_expand(target["expr"], scrapes), scrapes))
        assert result, f"{title} {target['refId']}: no series from {target['expr']}"
        if key == ("Throughput", "A"):
            assert round(result[""] * span_s, 3) >= run.published, result  # the result is rounded to 6 places
        elif title == "Stage time p95":
            assert set(result) == {"commit", "decode", "clean", "entities"}, result
            assert all(0 < v < 60 for v in result.values()), result
        elif title == "Append transaction":
            assert 0 < result[""] < 60, result
        else:
            assert result == expected[key], f"{title} {target['refId']}: {target['expr']}"
    assert set(expected) <= seen, "a panel the test expects is missing from the dashboard"


def _floats(counts: dict[str, int]) -> dict[str, float]:
    return {k: float(v) for k, v in counts.items()}


def _all_reasons(scrape: Scrape) -> set[str]:
    return set(by_label_all(scrape, "newsflow_messages_rejected_total", "reason"))


def by_label_all(scrape: Scrape, name: str, label: str) -> set[str]:
    """Every value of ``label`` that ``name`` has, zeros included."""
    return {dict(ls)[label] for ls in scrape.samples if ("__name__", name) in ls and label in dict(ls)}


async def test_a_killed_child_is_counted_and_its_counts_stay(run: Run) -> None:
    """Run last: the child pipeline process is SIGKILLed; the parent starts another."""
    before = await run.scraper.scrape()
    _, ready = await get_json(run.port, "/readyz")
    child_pid = ready["processes"]["health.child-1.json"]["pid"]
    os.kill(child_pid, signal.SIGKILL)

    async def restarted() -> bool:
        s = await run.scraper.scrape()
        status, doc = await get_json(run.port, "/readyz")
        new_child = doc["processes"].get("health.child-1.json", {})
        return (
            value(s, "newsflow_child_restarts_total") == 1
            and status == 200
            and new_child.get("pid") not in (None, child_pid)
            and value(s, "newsflow_partitions_assigned") == PARTITIONS
        )

    await wait_until(restarted, timeout_s=180, interval_s=1.0, what="the child restarted, counted, and ready again")
    after = run.scraper.scrapes[-1]
    for name in ("newsflow_messages_applied_total", "newsflow_messages_consumed_total", "newsflow_stage_seconds_count"):
        assert value(after, name) >= value(before, name) > 0, f"{name} fell when the child died"
    assert by_label(after, "newsflow_messages_rejected_total", "reason") == BAD_REASONS
    restarts = evaluate(
        _expand("sum(increase(newsflow_child_restarts_total[$__range]))", run.scraper.scrapes), run.scraper.scrapes
    )
    assert _flat(restarts) == {"": 1.0}, "the Restarts panel shows the restart"


async def test_readyz_says_degraded_while_postgresql_is_stopped(broker: EmbeddedBroker, tmp_path: Path) -> None:
    from newsflow.app.daemon import SERVICES, run_services
    from newsflow.app.health import Health

    pg = EmbeddedPostgres(tmp_path / "pgdata")  # its own server: stopping it leaves the other tests' alone
    await asyncio.to_thread(pg.start)
    try:
        url = await pg.ensure_database("outage")
        port = free_port()
        settings = settings_for(broker, url).model_copy(update={"metrics_port": port, "state_dir": tmp_path})
        await kafka.ensure_topics(settings.kafka_bootstrap, [(settings.raw_topic, 2), (settings.dlq_topic, 1)])
        stop = asyncio.Event()
        daemon = asyncio.create_task(run_services(settings, SERVICES, stop, health=Health(tmp_path / "health.json")))
        try:

            async def readiness_is(expected: str, code: int, database: bool) -> bool:
                assert not daemon.done(), daemon
                try:
                    status, doc = await get_json(port, "/readyz")
                except OSError:
                    return False
                return (
                    status == code and doc["readiness"] == expected and doc["checks"]["postgres_reachable"] is database
                )

            await wait_until(lambda: readiness_is("ready", 200, True), timeout_s=120, what="/readyz ready")
            await asyncio.to_thread(pg.stop)
            await wait_until(
                lambda: readiness_is("degraded", 503, False), timeout_s=60, what="/readyz degraded, PostgreSQL down"
            )
            _, doc = await get_json(port, "/readyz")
            assert doc["checks"]["broker_reachable"] is True
            assert "waiting_for_database" in json.dumps(doc["processes"])
            status, alive = await get_json(port, "/healthz")
            assert status == 200 and alive["alive"], "waiting out an outage is alive"
            _, text = await get(port, "/metrics")
            scrape = Scrape.parse(time.time(), text)
            assert value(scrape, "newsflow_postgres_up") == 0 and value(scrape, "newsflow_broker_up") == 1
            assert value(scrape, "newsflow_database_outages_total") >= 1

            await asyncio.to_thread(pg.start)
            await wait_until(lambda: readiness_is("ready", 200, True), timeout_s=120, what="/readyz ready again")
            _, text = await get(port, "/metrics")
            assert value(Scrape.parse(time.time(), text), "newsflow_postgres_up") == 1
        finally:
            stop.set()
            await asyncio.wait_for(daemon, 60)
        with pytest.raises(OSError):
            await get(port, "/readyz")  # the endpoint stops with the daemon
    finally:
        await asyncio.to_thread(pg.stop)
