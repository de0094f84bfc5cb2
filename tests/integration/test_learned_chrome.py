"""Per-source chrome learned from the stream, on a real broker and PostgreSQL.

A generated site changes its footer halfway through its stream: each footer is
kept until MIN_ARTICLES articles of the site carried it, removed after that,
never removed for another site, and the learned state rebuilt from the event
log equals the state built incrementally.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import asyncpg

from conftest import reaches, running_daemon, wait_until
from newsflow.adapters import chrome_store
from newsflow.app.publish import publish
from newsflow.domain.cleaning.learned_chrome import MIN_ARTICLES
from newsflow.settings import Settings

FOOTER_A = ["Footer Times is an independent newsroom founded in 1998", "Our reporters work in twelve cities"]
FOOTER_B = ["Footer Times prints a weekend edition every Saturday", "Tips go to the newsdesk around the clock"]
WAVE = 4
VOCABULARY = [
    "council",
    "harbour",
    "budget",
    "minister",
    "river",
    "election",
    "court",
    "school",
    "hospital",
    "railway",
    "farmers",
    "strike",
    "museum",
    "police",
    "festival",
    "bridge",
    "market",
    "energy",
    "drought",
    "mayor",
    "union",
    "report",
    "vote",
    "plan",
    "city",
    "region",
    "village",
    "storm",
]
CLEANED_SQL = "SELECT count(*) FROM newsflow.events WHERE type = 'ArticleCleaned'"
STATE_SQL = (
    "SELECT source, line_hash, articles, learned_seq IS NOT NULL AS learned"
    " FROM newsflow.source_chrome_lines ORDER BY source, line_hash"
)


def article(i: int, source: str, footer: list[str]) -> dict[str, object]:
    rnd = random.Random(i)
    paragraphs = [" ".join(rnd.choice(VOCABULARY) for _ in range(30)).capitalize() + "." for _ in range(3)]
    return {
        "url": f"https://{source.replace(' ', '').lower()}.invalid/{i}",
        "source": source,
        "fetched_at": "2024-03-01T10:00:00+00:00",
        "text": "\n\n".join([f"Headline number {i} about the {rnd.choice(VOCABULARY)}", *paragraphs, *footer]),
    }


async def footers_by_url(pool: asyncpg.Pool) -> dict[str, tuple[str, list[str]]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT payload FROM newsflow.events WHERE type = 'ArticleCleaned'")
    return {
        r["payload"]["url"]: (
            r["payload"]["text"],
            [x["text"] for x in r["payload"]["removed"] if x["reason"] == "learned_chrome"],
        )
        for r in rows
    }


async def test_site_footer_is_learned_relearned_after_a_change_and_rebuilt_from_the_log(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    stream = [article(i, "Footer Times", FOOTER_A if i < 3 * WAVE else FOOTER_B) for i in range(6 * WAVE)]
    stream += [article(100 + i, "Other Daily", FOOTER_A) for i in range(WAVE)]
    async with running_daemon(settings):
        # In waves, as a site publishes over time: what a batch learns applies from the next batch on.
        for start in range(0, len(stream), WAVE):
            wave = tmp_path / f"wave-{start}.jsonl"
            wave.write_text("\n".join(json.dumps(m) for m in stream[start : start + WAVE]) + "\n")
            await publish(settings.kafka_bootstrap, settings.raw_topic, [wave], progress=False)
            await wait_until(lambda n=start + WAVE: reaches(pool, n, CLEANED_SQL), what=f"wave at {start}")

    seen = await footers_by_url(pool)
    ft = [seen[str(m["url"])] for m in stream[: 6 * WAVE]]
    other = [seen[str(m["url"])] for m in stream[6 * WAVE :]]
    assert MIN_ARTICLES > WAVE, "the first wave of each footer cannot have learned it yet"
    for text, learned in ft[:WAVE]:  # footer A, first wave: not yet known
        assert all(line in text for line in FOOTER_A) and not learned
    for text, learned in ft[2 * WAVE : 3 * WAVE]:  # footer A, third wave: learned
        assert sorted(learned) == sorted(FOOTER_A) and not any(line in text for line in FOOTER_A)
    for text, learned in ft[3 * WAVE : 4 * WAVE]:  # the site switched footers: B is new again
        assert all(line in text for line in FOOTER_B) and not learned
    for text, learned in ft[5 * WAVE :]:  # footer B learned too
        assert sorted(learned) == sorted(FOOTER_B) and not any(line in text for line in FOOTER_B)
    for text, learned in other:  # another site's identical lines are its own business
        assert all(line in text for line in FOOTER_A) and not learned
    for text, _ in ft + other:  # the articles themselves are untouched
        assert text.count(".") >= 3

    async with pool.acquire() as conn:
        incremental = [tuple(r) for r in await conn.fetch(STATE_SQL)]
        learned_lines = await chrome_store.rebuild(conn)
        rebuilt = [tuple(r) for r in await conn.fetch(STATE_SQL)]
    assert learned_lines == len(FOOTER_A) + len(FOOTER_B)
    assert rebuilt == incremental
