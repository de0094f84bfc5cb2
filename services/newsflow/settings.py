"""Runtime settings, read from ``NEWSFLOW_*`` environment variables.

Every field here is documented in the README's settings table; keep the two in
step. When the daemon runs with ``--embedded`` the embedded broker and database
override ``kafka_bootstrap`` and ``database_url`` and write them to
``state_dir/endpoints.json`` so that other CLI commands find them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEWSFLOW_", extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated.")
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/newsflow", description="PostgreSQL URL (asyncpg/libpq form)."
    )
    raw_topic: str = Field("newsflow.raw-articles", description="Topic the scrapers publish raw articles to.")
    dlq_topic: str = Field("newsflow.raw-articles.dlq", description="Dead-letter topic for rejected messages.")
    raw_partitions: int = Field(4, description="Partitions created for the raw topic when newsflow creates it.")
    stories_topic: str = Field(
        "newsflow.stories", description="Topic the story feed publishes story decisions, updates and alerts to."
    )
    alert_min_articles: int = Field(0, ge=0, description="Alert once when a story reaches this many articles (0: off).")
    alert_min_sources: int = Field(0, ge=0, description="Alert once when a story reaches this many sources (0: off).")
    alert_min_articles_per_hour: int = Field(
        0, ge=0, description="Alert once when a story has this many articles first seen within one hour (0: off)."
    )
    consumer_group: str = Field("newsflow-pipeline", description="Kafka consumer group of the pipeline workers.")
    batch_max_records: int = Field(
        100, ge=1, description="Most messages one fetch takes; a commit takes every message that is ready."
    )
    batch_timeout_ms: int = Field(200, description="How long a worker waits to fill a batch.")
    max_in_flight: int = Field(
        200, ge=1, description="Messages one pipeline process works on at once (fetched, not yet committed)."
    )
    start_from: str = Field(
        "earliest", pattern="^(earliest|latest)$", description="Where a partition with no stored offset starts."
    )
    stage_workers: int = Field(
        2, ge=1, description="Worker processes per pipeline process that run the cleaning stage."
    )
    stage_timeout_s: float = Field(
        10.0,
        gt=0,
        description="CPU seconds one stage task (a message's cleaning, an entity piece) may use; an overrun is"
        " retried once alone, then rejected. Wall-clock backstop: 6 times this.",
    )
    stage_memory_mb: int = Field(
        1536, ge=0, description="Address-space limit of each stage worker process, in MiB (0: none)."
    )
    entity_fallback: bool = Field(
        True,
        description="For a language with no entity model, find the names the entity registry already knows"
        " (docs/enrichment.md); off: such articles get no entities (supported: false).",
    )
    projection_batch: int = Field(500, description="Events a projection applies per transaction.")
    cluster_snapshot_every: int = Field(
        5000, ge=1, description="Articles the story clusterer decides between two snapshots of its state."
    )
    poll_interval_s: float = Field(0.5, description="Log readers' poll interval when no notification arrives.")
    db_pool_size: int = Field(
        8, ge=4, description="asyncpg pool size per process (each log reader also holds one connection to listen)."
    )
    dashboard_password: str = Field(
        "dashboard", description="Password set for the read-only role newsflow_dashboard at migration time."
    )
    writer_password: str = Field(
        "writer", description="Password set for newsflow_writer at migration time; the services connect as it."
    )
    log_format: str = Field(
        "auto", pattern="^(auto|json|console)$", description="auto: console on a terminal, JSON otherwise."
    )
    log_level: str = Field("info", description="Minimum log level.")
    state_dir: Path = Field(Path(".newsflow"), description="Where embedded mode keeps its PostgreSQL data.")
    metrics_port: int = Field(
        9464,
        ge=0,
        le=65535,
        description="Port of the Prometheus metrics and health endpoint (/metrics, /healthz, /readyz); 0 or empty: off.",
    )
    metrics_host: str = Field("127.0.0.1", description="Address the metrics endpoint listens on (0.0.0.0: every one).")

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _empty_port_is_off(cls, value: object) -> object:
        return 0 if value in ("", None) else value

    def endpoints_file(self) -> Path:
        return self.state_dir / "endpoints.json"

    def writer_url(self) -> str:
        """Where the services connect: ``database_url``'s database as ``newsflow_writer``.

        ``database_url`` names the owner, who only migrates; everything that runs
        after that has the writer's grants and no more.
        """
        return as_role(self.database_url, WRITER_ROLE, self.writer_password)

    def secrets(self) -> list[str]:
        """Every password these settings hold, for masking (``redaction``)."""
        url_password = urlsplit(self.database_url).password
        return [p for p in (self.dashboard_password, self.writer_password, unquote(url_password or "")) if p]


def load_settings() -> Settings:
    """Settings from the environment; falls back to a running embedded stack's endpoints.

    An explicitly set ``NEWSFLOW_KAFKA_BOOTSTRAP``/``NEWSFLOW_DATABASE_URL`` always wins.
    """
    settings = Settings()
    endpoints = settings.endpoints_file()
    if endpoints.exists():
        data = json.loads(endpoints.read_text())
        updates = {}
        if "NEWSFLOW_KAFKA_BOOTSTRAP" not in os.environ and "kafka_bootstrap" in data:
            updates["kafka_bootstrap"] = data["kafka_bootstrap"]
        if "NEWSFLOW_DATABASE_URL" not in os.environ and "database_url" in data:
            updates["database_url"] = data["database_url"]
        settings = settings.model_copy(update=updates)
    return settings


WRITER_ROLE = "newsflow_writer"


def as_role(url: str, role: str, password: str = "") -> str:
    """``url`` with its user and password replaced: the same server and database, another role."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{quote(role, safe='')}:{quote(password, safe='')}@{host}"))
