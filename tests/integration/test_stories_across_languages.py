"""A story across languages, end to end: real broker, PostgreSQL, pipeline and clusterer.

An English report of a rail strike, then a French report of the same strike and an
unrelated French article (texts written for this test): the French report joins the
English story on the dense signal, the unrelated one starts its own, and the story's
dashboard row lists both languages.
"""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from conftest import reaches, role_url, running_daemon, wait_until
from newsflow.app.publish import publish
from newsflow.settings import Settings

ASSIGNED_SQL = "SELECT count(*) FROM newsflow.events WHERE type = 'ArticleAssignedToStory'"
EN_URL = "https://rail-news.invalid/french-rail-strike"
FR_URL = "https://journal-du-rail.invalid/greve-sncf"
FR_OTHER_URL = "https://culture-paris.invalid/orsay-rouvre"


def _message(url: str, source: str, at: str, title: str, text: str) -> dict[str, object]:
    return {"url": url, "source": source, "fetched_at": at, "published_at": at, "title": title, "text": text}


ENGLISH = _message(
    EN_URL,
    "Rail News",
    "2026-03-06T08:30:00+00:00",
    "French rail strike: half of trains cancelled on Monday",
    "French rail unions called an open-ended strike from Monday against the pension reform. The national "
    "operator SNCF expects one high-speed train in two to run, with heavy disruption on regional lines around "
    "Paris. Union leaders said the strike would go on until the government withdraws the reform, and "
    "commuters were advised to work from home.",
)
FRENCH = [
    _message(
        FR_URL,
        "Journal du Rail",
        "2026-03-06T09:00:00+00:00",
        "Grève à la SNCF : un train sur deux supprimé lundi",
        "Les syndicats de cheminots ont appelé à une grève reconductible à partir de lundi contre la réforme des "
        "retraites. La SNCF prévoit un TGV sur deux et de fortes perturbations sur les lignes régionales en "
        "Île-de-France. Les dirigeants syndicaux affirment que la grève durera jusqu'au retrait de la réforme, "
        "et les usagers sont invités à télétravailler.",
    ),
    _message(
        FR_OTHER_URL,
        "Culture Paris",
        "2026-03-06T10:00:00+00:00",
        "Le musée d'Orsay rouvre après deux ans de travaux",
        "Le musée d'Orsay a rouvert ses portes samedi après deux ans de rénovation. Les visiteurs découvrent de "
        "nouvelles salles consacrées aux impressionnistes, un parcours repensé et un restaurant sur le toit. La "
        "direction attend plus de trois millions de visiteurs cette année.",
    ),
]


async def test_a_french_report_joins_the_english_story_of_its_event_and_an_unrelated_one_does_not(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    first, later = tmp_path / "en.jsonl", tmp_path / "fr.jsonl"
    first.write_text(json.dumps(ENGLISH) + "\n")
    later.write_text("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in FRENCH))
    async with running_daemon(settings):
        await publish(settings.kafka_bootstrap, settings.raw_topic, [first], progress=False)
        await wait_until(lambda: reaches(pool, 1, ASSIGNED_SQL), what="the English report's story")
        await publish(settings.kafka_bootstrap, settings.raw_topic, [later], progress=False)
        await wait_until(
            lambda: reaches(pool, 3, "SELECT count(*) FROM projection.articles WHERE story_id IS NOT NULL"),
            what="3 articles in stories",
        )
    embedded = await pool.fetch("SELECT payload FROM newsflow.events WHERE type = 'ArticleEmbedded' ORDER BY position")
    assert len(embedded) == 3 and all(len(e["payload"]["vector"]) == 684 for e in embedded)
    dash = await asyncpg.connect(role_url(settings.database_url, "newsflow_dashboard"))
    try:
        members = {m["url"]: m for m in await dash.fetch("SELECT url, story_id FROM dashboard.story_articles")}
        stories = {r["id"]: r for r in await dash.fetch("SELECT id, languages FROM dashboard.stories")}
    finally:
        await dash.close()
    story = members[EN_URL]["story_id"]
    assert members[FR_URL]["story_id"] == story
    assert members[FR_OTHER_URL]["story_id"] != story
    assert sorted(stories[story]["languages"]) == ["en", "fr"]
    assert stories[members[FR_OTHER_URL]["story_id"]]["languages"] == ["fr"]
