"""The per-request canary reaches the upstream whichever body it is sent: the translated chat
request, or the client's own body passed through (Anthropic Messages, OpenAI Responses)."""

from __future__ import annotations

from propylon.gateway.protocol import NATIVE, native_body
from propylon.guard.canary import place_canary, strip_canaries


def test_a_passed_through_messages_body_gets_the_canary_in_its_system_blocks() -> None:
    blocks = [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}]
    native = {"model": "claude", "system": blocks, "messages": [{"role": "user", "content": "q"}]}
    request = {
        "model": "claude",
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "q"}],
        "propylon": {NATIVE: native},
    }
    placed = place_canary(request, "PYL-0123456789abcdef")
    assert "PYL-0123456789abcdef" in placed["messages"][0]["content"]
    body = native_body(placed)
    assert body is not None
    *kept, canary = body["system"]
    assert kept == blocks and "PYL-0123456789abcdef" in canary["text"]
    assert strip_canaries(canary["text"]) == ""
    assert native["system"] == blocks  # the client's body itself is not changed


def test_a_passed_through_responses_body_gets_it_in_instructions_and_developer_items() -> None:
    native = {
        "model": "gpt",
        "instructions": "Be terse.",
        "input": [
            {"role": "developer", "content": [{"type": "input_text", "text": "No lists."}]},
            {"role": "user", "content": "q"},
        ],
    }
    request = {
        "model": "gpt",
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "q"}],
        "propylon": {NATIVE: native},
    }
    body = native_body(place_canary(request, "PYL-fedcba9876543210"))
    assert body is not None
    assert strip_canaries(body["instructions"]) == "Be terse."
    developer = body["input"][0]["content"]
    assert developer[-1]["type"] == "input_text" and "PYL-fedcba9876543210" in developer[-1]["text"]
    assert body["input"][1] == {"role": "user", "content": "q"}
