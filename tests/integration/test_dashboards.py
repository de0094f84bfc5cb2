"""The Grafana dashboard's SQL runs, as the read-only dashboard role, against views the real pipeline filled.

Every panel query and the ``story`` variable query are taken from the provisioned dashboard JSON, the Grafana
macros they use are expanded here into plain SQL, and each must return rows for the seed articles (plus one
rejected message) with nothing mocked.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import asyncpg
import pytest

from conftest import reaches, role_url, running_daemon, wait_until
from newsflow.app.publish import publish
from newsflow.samples import SEEDS
from newsflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "newsflow-stories.json"
DATASOURCE_UID = "newsflow-pg"
DATASOURCE_TYPE = "grafana-postgresql-datasource"
VARIABLE_SQL = "SELECT id::text AS __value, headline AS __text FROM dashboard.stories ORDER BY last_seen DESC LIMIT 200"
STORY_ARTICLES_SQL = "SELECT count(*) FROM dashboard.story_articles"
REJECTIONS_SQL = "SELECT count(*) FROM dashboard.rejections"
BAD_LINE = {"url": "https://x.invalid/a", "source": "Ns News Online", "fetched_at": "2022-09-15T10:00:00+00:00"}

INTERVALS = {"1m": "minute", "1h": "hour", "1d": "day", "1w": "week"}
ARG = r"\s*([A-Za-z_][\w.]*)\s*"
INTERVAL = r"\s*'(\w+)'\s*"


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def query_panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def story_variable(dashboard: dict) -> dict:
    (var,) = [v for v in dashboard["templating"]["list"] if v["name"] == "story"]
    return var


def variable_sql(var: dict) -> str:
    q = var["query"]
    return q if isinstance(q, str) else q["rawSql"]


def expand_macros(sql: str, story_id: str) -> str:
    """Grafana's PostgreSQL macros and the ``story`` variable as plain SQL (an all-embracing time range)."""

    def interval(unit: str) -> str:
        assert unit in INTERVALS, f"interval {unit!r} has no date_trunc equivalent here"
        return INTERVALS[unit]

    sql = re.sub(rf"\$__timeFilter\({ARG}\)", r"\1 BETWEEN '2000-01-01' AND '2100-01-01'", sql)
    sql = re.sub(
        rf"\$__timeGroupAlias\({ARG},{INTERVAL}\)", lambda m: f"date_trunc('{interval(m[2])}', {m[1]}) AS \"time\"", sql
    )
    sql = re.sub(rf"\$__timeGroup\({ARG},{INTERVAL}\)", lambda m: f"date_trunc('{interval(m[2])}', {m[1]})", sql)
    sql = re.sub(r"\$\{story\}|\$story\b", story_id, sql)
    assert "$" not in sql, f"a macro or variable left unexpanded in:\n{sql}"
    return sql


def test_dashboard_json_is_grafana_shaped() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "newsflow-stories" and dashboard["title"] == "newsflow — stories"
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["time"]["from"] and dashboard["time"]["to"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids)), "panel ids must be unique integers"
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert {"x", "y", "w", "h"} <= set(g) and all(isinstance(g[k], int) for k in "xywh"), p["title"]
        assert g["x"] >= 0 and g["y"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine

    panels = query_panels(dashboard)
    assert len(panels) >= 8
    for p in panels:
        assert p["title"] and p["type"] in {"table", "timeseries", "barchart", "stat", "bargauge"}, p["title"]
        assert p["datasource"] == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}, p["title"]
        assert p["targets"], p["title"]
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == DATASOURCE_UID and t["rawQuery"] is True, p["title"]
            assert t["format"] in {"table", "time_series"} and t["rawSql"].strip(), p["title"]
            # Only the dashboard schema: every relation a panel reads is schema-qualified as dashboard.*
            relations = re.findall(r"\b(?:FROM|JOIN)\s+([\w.]+)", t["rawSql"], flags=re.I)
            assert relations and all(r.startswith("dashboard.") for r in relations), (p["title"], relations)

    sql = "\n".join(t["rawSql"] for p in panels for t in p["targets"])
    for view in (
        "stories",
        "articles",
        "story_timeline",
        "story_articles",
        "story_entities",
        "entity_daily",
        "sources",
        "rejections",
    ):
        assert f"dashboard.{view} " in sql, f"no panel reads dashboard.{view}"
    assert "$__timeFilter(" in sql and "$__timeGroupAlias(" in sql

    var = story_variable(dashboard)
    assert var["type"] == "query" and var["datasource"]["uid"] == DATASOURCE_UID
    assert variable_sql(var) == VARIABLE_SQL


def test_provisioning_files_point_at_the_dashboard_role_and_folder() -> None:
    ds = (GRAFANA / "provisioning" / "datasources" / "newsflow.yml").read_text()
    assert f"type: {DATASOURCE_TYPE}" in ds and f"uid: {DATASOURCE_UID}" in ds
    assert "user: newsflow_dashboard" in ds and "password: ${NEWSFLOW_DASHBOARD_PASSWORD}" in ds
    assert "sslmode: disable" in ds and "database: newsflow" in ds
    assert int(re.search(r"postgresVersion:\s*(\d+)", ds)[1]) >= 1500  # type: ignore[index]
    providers = (GRAFANA / "provisioning" / "dashboards" / "newsflow.yml").read_text()
    assert "path: /var/lib/grafana/dashboards" in providers and "type: file" in providers


async def test_every_panel_query_returns_rows_as_the_dashboard_role(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    dashboard = load_dashboard()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(BAD_LINE) + "\n")
    async with running_daemon(settings):
        assert await publish(settings.kafka_bootstrap, settings.raw_topic, [SEEDS], progress=False) == 5
        await publish(settings.kafka_bootstrap, settings.raw_topic, [bad], progress=False)
        await wait_until(
            lambda: reaches(pool, 5, STORY_ARTICLES_SQL),
            timeout_s=120,
            what="the 5 seed articles assigned to stories (dashboard.story_articles)",
        )
        await wait_until(lambda: reaches(pool, 1, REJECTIONS_SQL), what="the malformed line in dashboard.rejections")
        await wait_until(
            lambda: reaches(pool, 1, "SELECT count(*) FROM dashboard.stories WHERE headline IS NOT NULL"),
            what="a story with its aggregates",
        )

    dash = await asyncpg.connect(role_url(settings.database_url, "newsflow_dashboard"))
    try:
        assert await dash.fetchval("SHOW transaction_read_only") == "on"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await dash.fetch("SELECT 1 FROM newsflow.events LIMIT 1")

        choices = await dash.fetch(variable_sql(story_variable(dashboard)))
        assert choices and all(c["__value"] and c["__text"] for c in choices)
        story_id = choices[0]["__value"]  # what Grafana selects by default

        failures = []
        for p in query_panels(dashboard):
            for t in p["targets"]:
                sql = expand_macros(t["rawSql"], story_id)
                try:
                    rows = await dash.fetch(sql)
                except asyncpg.PostgresError as e:
                    failures.append(f"{p['title']}: {type(e).__name__}: {e}\n{sql}")
                    continue
                if not rows:
                    failures.append(f"{p['title']}: no rows\n{sql}")
                    continue
                if t["format"] == "time_series":
                    assert "time" in rows[0], p["title"]
                    assert all(isinstance(r["time"], dt.datetime) for r in rows), p["title"]
        assert not failures, "\n\n".join(failures)
    finally:
        await dash.close()
