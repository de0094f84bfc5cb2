"""Ids and stream names derived from content: a replay must yield the same ones."""

from __future__ import annotations

import uuid

from newsflow.domain import identity

URL = "https://nsnewsonline.invalid/2022/09/15/putin-xi-meet-first-time-since-invasion"


def test_article_id_is_a_stable_uuid5_of_the_stripped_url() -> None:
    article_id = identity.article_id_for(URL)
    assert article_id.version == 5
    assert article_id == uuid.UUID("f95e878e-04d1-5463-8639-319f5132717f")
    assert identity.article_id_for(f"  {URL}\n") == article_id
    assert identity.article_id_for(URL + "?page=2") != article_id


def test_stream_names_carry_their_prefix() -> None:
    some_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert identity.article_stream(some_id) == f"article-{some_id}"
    assert identity.story_stream(some_id) == f"story-{some_id}"
    assert identity.rejection_stream(some_id) == f"rejection-{some_id}"
    assert identity.consumer_stream("newsflow") == "consumer-newsflow"


def test_entity_id_depends_on_type_and_key() -> None:
    person = identity.entity_id_for("person", "jordan")
    assert identity.entity_id_for("person", "jordan") == person
    assert identity.entity_id_for("place", "jordan") != person
    assert identity.entity_id_for("person", "jordan river") != person
    assert person.version == 5


def test_story_id_is_derived_from_but_differs_from_the_article_id() -> None:
    article_id = identity.article_id_for(URL)
    story_id = identity.story_id_for(article_id)
    assert story_id != article_id
    assert story_id == identity.story_id_for(identity.article_id_for(URL))
    assert story_id != identity.story_id_for(identity.article_id_for(URL + "/other"))


def test_sha256_hex() -> None:
    assert identity.sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
