"""A run's feed hears its events whatever spelling of the run id the client used."""

from __future__ import annotations

import uuid

from propylon.jobs.progress import run_topic, topics_of


def test_every_spelling_of_a_run_id_is_the_topic_its_events_are_published_on() -> None:
    run_id = str(uuid.uuid4())
    published = topics_of({"run_id": run_id, "type": "chunk"})
    for spelling in (run_id, run_id.upper(), run_id.replace("-", ""), f"{{{run_id}}}"):
        assert [run_topic(spelling)] == published, spelling


def test_a_text_that_is_no_uuid_keeps_its_own_topic() -> None:
    assert run_topic("not-a-run") == "run:not-a-run"
