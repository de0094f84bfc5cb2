"""The Prometheus, Grafana and compose files that scrape and show the metrics agree with the code and each other.

Docker does not run here: the files are parsed and checked against the settings and
the metric objects; the health checks themselves run against a live daemon in
tests/integration/test_metrics_endpoint.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
import yaml
from prometheus_client import REGISTRY

from newsflow.adapters import metrics  # noqa: F401  (registers the metric objects)
from newsflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OPS = DEPLOY / "grafana" / "dashboards" / "newsflow-operations.json"
PORT = Settings().metrics_port


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _newsflow_sample_names() -> set[str]:
    """Every sample name the newsflow metrics expose (a histogram's _bucket/_count/_sum, a counter's _total)."""
    names = set()
    for family in REGISTRY.collect():
        if not family.name.startswith("newsflow_"):
            continue
        kind = family.type
        base = family.name
        if kind == "counter":
            names.add(f"{base}_total")
        elif kind == "histogram":
            names |= {f"{base}_bucket", f"{base}_count", f"{base}_sum"}
        else:
            names.add(base)
    return names


def test_every_metric_is_named_by_the_conventions() -> None:
    names = _newsflow_sample_names()
    assert len(names) >= 20
    for family in REGISTRY.collect():
        if family.name.startswith("newsflow_"):
            assert family.documentation, family.name
            assert re.fullmatch(r"newsflow_[a-z_]+", family.name), family.name
            if family.type == "histogram":
                assert family.name.endswith("_seconds"), family.name


def test_compose_runs_prometheus_scraping_the_daemon_and_grafana_beside_it() -> None:
    compose = _yaml(ROOT / "docker-compose.yml")
    services = compose["services"]
    newsflow = services["newsflow"]
    assert int(newsflow["environment"]["NEWSFLOW_METRICS_PORT"]) == PORT
    assert f"{PORT}:{PORT}" in newsflow["ports"]
    assert f":{PORT}/readyz" in newsflow["healthcheck"]["test"][-1]

    prometheus = services["prometheus"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in prometheus["volumes"]}
    config_path = mounts["/etc/prometheus/prometheus.yml"]
    assert (ROOT / config_path).resolve() == DEPLOY / "prometheus" / "prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    (job,) = _yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": [f"newsflow:{PORT}"]}], "scrapes the compose service at its port"

    grafana = services["grafana"]
    assert "prometheus" in grafana["depends_on"]
    grafana_mounts = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"]}
    assert grafana_mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    assert grafana_mounts["/var/lib/grafana/dashboards"] == "./deploy/grafana/dashboards"


def test_the_image_serves_the_endpoint_on_every_interface_and_checks_it() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"NEWSFLOW_METRICS_PORT={PORT}" in dockerfile and "NEWSFLOW_METRICS_HOST=0.0.0.0" in dockerfile
    assert f"EXPOSE {PORT}" in dockerfile
    (check,) = re.findall(r"^HEALTHCHECK (.*?) CMD (\[.*\])$", dockerfile.replace("\\\n", " "), flags=re.M)
    argv = json.loads(check[1])
    assert argv[:2] == ["python", "-c"] and "/healthz" in argv[2] and f"'{PORT}'" in argv[2]
    assert "--start-period=" in check[0], "the first start loads the models before anything ticks"


def test_the_operations_dashboard_is_provisioned_over_the_prometheus_datasource() -> None:
    (source,) = _yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    dashboard = json.loads(OPS.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "newsflow-operations" and dashboard["title"] == "newsflow — operations"
    stories = json.loads((OPS.parent / "newsflow-stories.json").read_text(encoding="utf-8"))
    assert dashboard["schemaVersion"] == stories["schemaVersion"], "one Grafana, one schema version"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine


def test_every_panel_query_parses_and_reads_only_metrics_the_daemon_exposes() -> None:
    dashboard = json.loads(OPS.read_text(encoding="utf-8"))
    exposed = _newsflow_sample_names()
    read: set[str] = set()
    for p in dashboard["panels"]:
        assert p["datasource"] == {"type": "prometheus", "uid": "newsflow-prom"}, p["title"]
        assert p["description"] and p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "newsflow-prom", p["title"]
            expr = t["expr"].replace("$__rate_interval", "5m").replace("$__range", "1h")
            promql_parser.parse(expr)  # raises on a syntax error
            names = set(re.findall(r"\bnewsflow_[a-z_]+", expr))
            assert names and names <= exposed, (p["title"], names - exposed)
            read |= names
    for wanted in ("consumer_lag", "messages_applied_total", "messages_rejected_total", "reader_lag_events"):
        assert f"newsflow_{wanted}" in read, f"no panel shows newsflow_{wanted}"
    assert "newsflow_child_restarts_total" in read and "newsflow_stage_pool_replacements_total" in read
