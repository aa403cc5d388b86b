"""The load generator's request bodies."""

from __future__ import annotations

import orjson
from bench import load


def contents(target: load.Target, n: int) -> list[str]:
    return [orjson.loads(target.payload())["messages"][0]["content"] for _ in range(n)]


def test_messages_are_taken_in_turn_each_with_a_new_serial() -> None:
    target = load.chat_target("http://x", "m", messages=["book a table", "what time is it"])
    sent = contents(target, 4)
    assert [s.split(" (ref #")[0] for s in sent] == ["book a table", "what time is it"] * 2
    assert len(set(sent)) == 4


def test_without_messages_every_request_is_the_template_with_a_new_serial() -> None:
    sent = contents(load.chat_target("http://x", "m"), 3)
    assert all(s.startswith("Say hello to request #") for s in sent)
    assert len(set(sent)) == 3
