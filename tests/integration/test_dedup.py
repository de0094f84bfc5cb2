"""Exact and near duplicates: keys (pure) and detection through the pipeline (real broker and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from conftest import reaches, running_daemon, scalar, wait_until
from newsflow.app.publish import publish
from newsflow.app.reprocess import reprocess
from newsflow.domain import dedup
from newsflow.ingest.entity_plan import NEAR_REUSE_MIN_JACCARD
from newsflow.samples import SEEDS
from newsflow.settings import Settings

MANIFEST = json.loads((SEEDS / "manifest.json").read_text())["files"]
ORIGINAL = "000_0a4c76719d70d0cd.txt"


def seed_text(name: str) -> str:
    return (SEEDS / name).read_text()


def body(name: str) -> list[str]:
    """The seed's paragraphs without its own chrome (title first, trailing block dropped)."""
    paragraphs = [p.strip() for p in seed_text(name).split("\n\n") if p.strip()]
    return paragraphs[: paragraphs.index("Related Articles")] if name == ORIGINAL else paragraphs


def test_exact_key_ignores_case_quotes_and_whitespace_but_not_words() -> None:
    text = "\n\n".join(body(ORIGINAL)[1:])
    variant = text.upper().replace("“", '"').replace("”", '"').replace("’", "'").replace("\n\n", "\n \n  ")
    assert dedup.exact_key(variant) == dedup.exact_key(text)
    assert dedup.exact_key(text.replace("Thursday", "Friday")) != dedup.exact_key(text)


def test_articles_quoting_the_same_sentences_are_not_near_duplicates() -> None:
    keys = {name: dedup.dedup_key("\n\n".join(body(name))) for name in MANIFEST}
    names = sorted(keys)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            sim = dedup.similarity(keys[a].signature, keys[a].shingle_count, keys[b].signature, keys[b].shingle_count)
            assert not sim.near_duplicate, (a, b, sim)


def variants() -> dict[str, dict[str, object]]:
    """The original seed and copies of it, each under its own URL and site."""
    paragraphs = body(ORIGINAL)
    title, text = paragraphs[0], paragraphs[1:]
    edited = [p.replace("Thursday", "Wednesday").replace("biggest", "largest") for p in text]
    del edited[5]
    edited.insert(3, "Officials in Tashkent said security in the city had been tightened for the visit.")
    half = len(text) // 2

    def msg(site: str, lines: list[str]) -> dict[str, object]:
        return {
            "url": f"https://{site}.invalid/putin-xi",
            "source": site,
            "fetched_at": "2022-09-15T20:00:00+00:00",
            "published_at": "2022-09-15T19:00:00+00:00",
            "text": "\n\n".join(lines),
        }

    return {
        "original": {**msg("nsnews", []), "text": seed_text(ORIGINAL), "source": "Ns News Online"},
        # Same words, other case/quotes/spacing and other (recognised) chrome: the same normalized body.
        "exact": msg(
            "mirror",
            [title.upper(), *(p.replace("“", '"').replace("”", '"') for p in text), "Share post:", "Leave a Reply"],
        ),
        # The wire story under site chrome the rules do not know: header and footer lines stay in the text.
        "chrome": msg(
            "wiresite",
            [
                "WireSite Daily — independent news from Central Asia since 2004",
                title,
                *text,
                "WireSite Daily is funded by its readers in eleven countries across the region.",
            ],
        ),
        "truncated": msg("syndic", [title, *text[:half], "Read more: Putin, Xi meet for first time since invasion"]),
        "edited": msg("rewrite", [title, *edited]),
    }


async def test_duplicates_point_at_the_first_seen_article_and_others_do_not(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    copies = variants()
    first, rest = tmp_path / "first.jsonl", tmp_path / "rest.jsonl"
    first.write_text(json.dumps(copies.pop("original")) + "\n")
    others = [{**m, "text": seed_text(name)} for name, m in MANIFEST.items() if name != ORIGINAL]
    rest.write_text("\n".join(json.dumps(m) for m in [*copies.values(), *others]) + "\n")
    async with running_daemon(settings):
        await publish(settings.kafka_bootstrap, settings.raw_topic, [first], progress=False)
        await wait_until(lambda: reaches(pool, 1, "SELECT count(*) FROM dashboard.articles"), what="the original")
        await publish(settings.kafka_bootstrap, settings.raw_topic, [rest], progress=False)
        await wait_until(lambda: reaches(pool, 9, "SELECT count(*) FROM dashboard.articles"), what="all articles")
        await wait_until(
            lambda: reaches(pool, 4, "SELECT count(*) FROM dashboard.articles WHERE duplicate_of IS NOT NULL"),
            what="duplicates projected",
        )
        # Re-keying every stored article in first-seen order reaches the same conclusions.
        assert await reprocess(pool, None, "dedup") == 9 + 4
        head = await scalar(pool, "SELECT max(position) FROM newsflow.events")
        await wait_until(
            lambda: reaches(pool, head, "SELECT position FROM newsflow.checkpoints WHERE name = 'projection.stories'"),
            what="projection caught up",
        )
    async with pool.acquire() as conn:
        rows = {r["url"]: r for r in await conn.fetch("SELECT * FROM dashboard.articles")}
        all_detected = await conn.fetch(
            "SELECT payload FROM newsflow.events WHERE type = 'ArticleDuplicateDetected' ORDER BY position"
        )
        detected = {r["payload"]["article_id"]: r["payload"] for r in all_detected[:4]}
        redetected = {r["payload"]["article_id"]: r["payload"] for r in all_detected[4:]}
        entity_runs = {
            r["payload"]["article_id"]: r["payload"]
            for r in await conn.fetch("SELECT payload FROM newsflow.events WHERE type = 'ArticleEntitiesExtracted'")
        }
    original_url = "https://nsnews.invalid/putin-xi"
    assert rows[original_url]["duplicate_of"] is None
    expected_kind = {"exact": "exact", "chrome": "near", "truncated": "near", "edited": "near"}
    for name, kind in expected_kind.items():
        row = rows[str(copies[name]["url"])]
        assert (row["duplicate_of"], row["duplicate_kind"]) == (original_url, kind), name
        event = detected[str(row["id"])]
        assert event["canonical_url"] == original_url and event["stage_version"] == dedup.STAGE_VERSION
        assert (event["similarity"] == 1.0) == (kind == "exact")
    for m in others:  # the other seeds tell the same story in their own words: not duplicates
        assert rows[str(m["url"])]["duplicate_of"] is None
    assert len(detected) == len(expected_kind)
    assert {a: (d["kind"], d["canonical_url"]) for a, d in redetected.items()} == {
        a: (d["kind"], d["canonical_url"]) for a, d in detected.items()
    }
    # The exact duplicate and the close near duplicates did not pay for the entity model: they took the
    # canonical's result, and say so; a copy that lost half the text ran the model on what it has.
    original_id, exact_id = str(rows[original_url]["id"]), str(rows[str(copies["exact"]["url"])]["id"])
    close = {
        str(rows[str(copies[n]["url"])]["id"])
        for n in ("chrome", "truncated", "edited")
        if detected[str(rows[str(copies[n]["url"])]["id"])]["similarity"] >= NEAR_REUSE_MIN_JACCARD
    }
    truncated_id = str(rows[str(copies["truncated"]["url"])]["id"])
    assert close and truncated_id not in close
    assert {a for a, run in entity_runs.items() if run["reused_from"]} == {exact_id, *close}
    for a in (exact_id, *close):
        assert entity_runs[a]["reused_from"] == original_id
        assert entity_runs[a]["entities"] == entity_runs[original_id]["entities"]
    assert entity_runs[truncated_id]["reused_from"] is None and entity_runs[truncated_id]["entities"]
