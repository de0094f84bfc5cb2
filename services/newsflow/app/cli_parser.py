"""The `newsflow` command line's arguments and help: what each command takes and what its words mean."""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DESCRIPTION = "`newsflow` command line: run the daemon, publish as a scraper, look at stories and status."


def _aware_time(text: str) -> datetime:
    """An ISO time; without an offset it is taken as UTC."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _existing(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file or directory: {text}")
    return path


def _existing_file(text: str) -> Path:
    path = _existing(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give one text, HTML or JSON file")
    return path


def _existing_dir(text: str) -> Path:
    path = _existing(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a directory")
    return path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="newsflow", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True)

    _add_daemon_commands(sub)
    _add_reading_commands(sub)
    _add_offline_commands(sub)
    _add_maintenance_commands(sub)
    _add_stage_rerun_commands(sub)
    return p


def _add_daemon_commands(sub: Any) -> None:
    run = sub.add_parser("run", help="run the daemon (all services, or one)")
    run.add_argument("service", nargs="?", default="all", choices=["all", "pipeline", "clusterer", "projector", "feed"])
    run.add_argument(
        "--embedded",
        action="store_true",
        help="start a private PostgreSQL and an embedded broker under NEWSFLOW_STATE_DIR",
    )
    run.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="pipeline processes in the consumer group (this one and N-1 children)",
    )
    run.add_argument(
        "--publish",
        nargs="*",
        type=_existing,
        default=[],
        help="once running, publish these files/directories as a scraper would",
    )

    pub = sub.add_parser("publish", help="send text/HTML files, directories or JSONL to the raw topic")
    pub.add_argument("paths", nargs="+", type=_existing, help="files (.txt, .html, .json, .jsonl) or directories")
    pub.add_argument("--source", help="source name for text/HTML files (default: their directory name)")
    pub.add_argument("--topic", help="topic (default: NEWSFLOW_RAW_TOPIC)")


def _add_reading_commands(sub: Any) -> None:
    stories = sub.add_parser(
        "stories",
        help="list stories from the dashboard views, or show one",
        description="Stories, most recently updated first (dashboard.stories).",
        epilog=STORY_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stories.add_argument("--json", action="store_true")
    stories.add_argument("--limit", type=int, default=50)
    stories_sub = stories.add_subparsers(dest="action")
    show = stories_sub.add_parser("show", help="one story: headline, sources, timeline, entities, articles and why")
    show.add_argument("id", type=uuid.UUID)
    show.add_argument(
        "--as-of", type=_aware_time, help="as the story stood at this ISO time (from the events up to then)"
    )
    show.add_argument("--json", action="store_true")
    follow = stories_sub.add_parser(
        "follow", help="print the story feed (NEWSFLOW_STORIES_TOPIC) as it arrives, one line per record"
    )
    follow.add_argument("--json", action="store_true", help="each record as published (schemas/story_feed.v1.json)")
    follow.add_argument("--from-beginning", action="store_true", help="start at the topic's first record, not its end")
    follow.add_argument("--count", type=_positive, metavar="N", help="stop after N records")


STORY_STATUS_HELP = """\
status of a story, from the time of its newest article (published, else fetched):
  developing  an article in the last 24 hours
  cooling     the newest is 24 to 72 hours old
  stale       nothing new for 72 hours (the story is kept; a new report revives it)"""


def _status_help() -> str:
    from newsflow.app.health import READINESS_HELP

    lines = ["readiness of the daemon (also per process and service):"]
    lines += [f"  {state:<13}{meaning}" for state, meaning in READINESS_HELP.items()]
    lines += [
        "  a process listed as 'gone' stopped writing its heartbeat (killed); 'stopped' shut down cleanly.",
        "lag: messages in the broker's log after the offset stored in PostgreSQL (0: all applied);",
        "a reader's 'behind': events in newsflow.events after its checkpoint.",
    ]
    return "\n".join(lines)


def _add_maintenance_commands(sub: Any) -> None:
    proj = sub.add_parser("projections", help="projection maintenance")
    proj_sub = proj.add_subparsers(dest="action", required=True)
    proj_rebuild = proj_sub.add_parser("rebuild", help="replay the log into fresh tables and swap them in")
    proj_rebuild.add_argument("name", nargs="?", default="stories", choices=["stories"])

    status = sub.add_parser(
        "status",
        help="readiness, consumer lag, reader positions, event counts, rejections",
        epilog=_status_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("--json", action="store_true")


def _add_offline_commands(sub: Any) -> None:
    ins = sub.add_parser("inspect", help="run the stages on one file (text, HTML or a raw JSON message), offline")
    ins.add_argument("path", type=_existing_file)
    ins.add_argument("--source", help="source name (default: manifest.json next to the file, else the directory name)")
    ins.add_argument("--url", help="article URL (default: manifest.json next to the file, else a file:// URL)")
    ins.add_argument("--json", action="store_true", help="one JSON object with stable keys")

    ev = sub.add_parser("eval", help="score newsflow's stages on public benchmarks, beside a baseline")
    ev_sub = ev.add_subparsers(dest="target", required=True)
    ev_ex = ev_sub.add_parser("extraction", help="main-text extraction vs bare trafilatura")
    ev_ex.add_argument(
        "dir", type=_existing_dir, help="the extraction-benchmark directory (scrapinghub-aeb/, trafilatura-eval/)"
    )
    ev_ex.add_argument("--limit", type=int, help="pages per benchmark (default: all)")
    ev_st = ev_sub.add_parser("stories", help="story clustering (B-cubed) vs a hindsight-tuned TF-IDF baseline")
    ev_st.add_argument("dir", type=_existing_dir, help="the story-clusters directory")
    ev_st.add_argument(
        "--signal",
        choices=["across_languages", "everywhere", "off"],
        default="across_languages",
        help="the dense signal's use: only across languages (the daemon's), in every score, or off (version 5)",
    )
    ev_en = ev_sub.add_parser("enrichment", help="language, entity and dedup quality")
    ev_en.add_argument(
        "dir",
        type=_existing_dir,
        nargs="?",
        help="the shared data directory (langid/, story-clusters/); entities need only the package",
    )


def _add_stage_rerun_commands(sub: Any) -> None:
    rep = sub.add_parser("reprocess", help="run one stage again over stored articles, appending new events")
    rep.add_argument("--stage", required=True, choices=["clean", "language", "entities", "dedup"])
    rep.add_argument(
        "--since",
        type=datetime.fromisoformat,
        help="only articles whose stage input was recorded at or after this ISO time",
    )

    chrome = sub.add_parser("chrome", help="per-source learned chrome")
    chrome_sub = chrome.add_subparsers(dest="action", required=True)
    chrome_sub.add_parser("rebuild", help="recompute the learned lines from the event log")

    sub.add_parser("migrate", help="apply database migrations and exit")
    schema = sub.add_parser("schema", help="print a JSON Schema: the raw-message contract, or the story feed's record")
    schema.add_argument(
        "which",
        nargs="?",
        default="raw",
        choices=["raw", "feed"],
        help="raw: schemas/raw_article.v1.json (default); feed: schemas/story_feed.v1.json",
    )
