"""The daemon's HTTP endpoint on ``NEWSFLOW_METRICS_PORT``: ``/metrics``, ``/healthz`` and ``/readyz``.

Served by the daemon's parent process for all its processes: ``/metrics`` adds
up every process's values (``adapters.metric_files``), ``/healthz`` and
``/readyz`` judge every process's health snapshot, as ``newsflow status`` does
(``health``). ``/healthz`` answers 200 while every loop of every live process
has ticked within ``health.ALIVE_WITHIN_S``; ``/readyz`` answers 200 only when
the daemon is ``ready``, 503 otherwise (``degraded`` while waiting out an
outage); both carry the states as JSON.

The server is prometheus_client's choice, the standard library's WSGI server,
on a thread of its own: a scrape never waits on the event loop. The health
answers are computed on the event loop (the snapshots change there), so an
event loop that does not answer within ``LOOP_ANSWER_S`` is itself reported
as not alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app, multiprocess

from newsflow.adapters import metric_files, metrics
from newsflow.app import health, probe
from newsflow.app.health import Health
from newsflow.settings import Settings

log = structlog.get_logger(__name__)

LOOP_ANSWER_S = 5.0
# Reachability older than this is not known any more (the probe itself is stuck).
PROBE_FRESH_S = 3 * probe.INTERVAL_S + 2 * probe.TIMEOUT_S

Environ = dict[str, Any]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class Judge:
    """The health documents of a daemon: its parent's ``Health`` beside its children's files, and the probe."""

    def __init__(self, settings: Settings, own: Health, reach: probe.Probe) -> None:
        self.settings = settings
        self.own = own
        self.reach = reach

    def snapshots(self) -> dict[str, dict[str, Any]]:
        children = {
            name: snap
            for name, snap in health.read_all(self.settings.state_dir).items()
            if name.startswith("health.child-")
        }
        name = self.own.path.name if self.own.path is not None else health.file_for(self.settings.state_dir, None).name
        return {name: self.own.snapshot(), **children}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        last = self.reach.last
        fresh = time.time() - last.at <= PROBE_FRESH_S
        doc = health.summary(self.snapshots(), fresh and last.broker, fresh and last.database)
        return doc["readiness"] == "ready", doc

    def alive(self) -> tuple[bool, dict[str, Any]]:
        snapshots = self.snapshots()
        stuck = health.stuck_loops(snapshots)
        loops = {name: snap.get("loops", {}) for name, snap in snapshots.items()}
        return not stuck, {"alive": not stuck, "stuck_loops": stuck, "loops": loops}


def metrics_registry() -> CollectorRegistry:
    """Every process's values in multiprocess mode; this process's registry otherwise."""
    if not metric_files.in_use():
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def application(
    judge: Judge, loop: asyncio.AbstractEventLoop, registry: CollectorRegistry
) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    """The WSGI application: the health paths answered on ``loop``, everything else by prometheus_client."""
    serve_metrics = make_wsgi_app(registry)

    async def on_loop(answer: Callable[[], tuple[bool, dict[str, Any]]]) -> tuple[bool, dict[str, Any]]:
        return answer()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        answers = {"/healthz": judge.alive, "/readyz": judge.ready}
        if path not in answers:
            return serve_metrics(environ, start_response)  # type: ignore[no-any-return]
        try:
            ok, doc = asyncio.run_coroutine_threadsafe(on_loop(answers[path]), loop).result(LOOP_ANSWER_S)
        except TimeoutError:
            ok, doc = False, {"alive": False, "error": f"the event loop did not answer within {LOOP_ANSWER_S:g} s"}
        body = json.dumps(doc, indent=2, default=str).encode()
        start_response(
            "200 OK" if ok else "503 Service Unavailable",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow client never holds up the daemon's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes come every few seconds; they are not worth a log line each."""


@contextlib.asynccontextmanager
async def serving(settings: Settings, own: Health, stop: asyncio.Event) -> AsyncIterator[None]:
    """Serve the endpoint and run the probe while the body runs (nothing if ``metrics_port`` is 0).

    A port in use fails the start: an operator who set it would otherwise scrape nothing, unseen.
    """
    if not settings.metrics_port:
        yield
        return
    reach = probe.Probe(settings, own)
    app = application(Judge(settings, own, reach), asyncio.get_running_loop(), metrics_registry())
    try:
        server = make_server(
            settings.metrics_host, settings.metrics_port, app, server_class=_Server, handler_class=_QuietHandler
        )
    except OSError as exc:
        raise metric_files.MetricsPortInUse(
            f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} ({exc.strerror});\n"
            "  set NEWSFLOW_METRICS_PORT to a free port, or to 0 to turn the endpoint off"
        ) from exc
    metrics.build_info()
    metrics.initialize()
    thread = threading.Thread(target=server.serve_forever, name="metrics-endpoint", daemon=True)
    thread.start()
    probing = asyncio.create_task(reach.run(stop), name="probe")
    log.info(
        "metrics.serving",
        host=settings.metrics_host,
        port=server.server_port,
        paths=["/metrics", "/healthz", "/readyz"],
    )
    try:
        yield
    finally:
        probing.cancel()
        await asyncio.gather(probing, return_exceptions=True)
        await asyncio.to_thread(server.shutdown)
        server.server_close()
