"""The fake model's answers are deterministic and shaped for what tests assert on."""

from __future__ import annotations

import numpy as np

from propylon.testing.completion import compose_text, compose_tool_call, text_of
from propylon.testing.embedding import embed


def test_answer_echoes_the_prompt_then_pads_deterministically() -> None:
    first = compose_text("tell me about the sea", target_tokens=10, max_tokens=None)
    second = compose_text("tell me about the sea", target_tokens=10, max_tokens=None)

    assert first == second
    assert first.text.startswith("Echo: tell me about the sea ")
    assert first.tokens == 10
    assert "".join(first.pieces) == first.text
    assert first.finish == "stop"


def test_different_prompts_pad_differently() -> None:
    one = compose_text("a", target_tokens=12, max_tokens=None).text.split()[2:]
    other = compose_text("b", target_tokens=12, max_tokens=None).text.split()[2:]

    assert one != other


def test_stop_sequence_cuts_at_its_first_occurrence() -> None:
    answer = compose_text("one two three", target_tokens=6, max_tokens=None, stop=["three", "two"])

    assert answer.text == "Echo: one "
    assert answer.finish == "stop_sequence"
    assert answer.stop_sequence == "two"


def test_tool_arguments_fill_every_property_with_its_type() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "count": {"type": "integer"},
            "ratio": {"type": "number"},
            "on": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "mode": {"enum": ["fast", "slow"]},
            "where": {"type": "object", "properties": {"lat": {"type": ["number", "null"]}}},
        },
    }

    call = compose_tool_call("find", schema, "prompt").tool_call

    assert call is not None
    args = call.input
    assert isinstance(args["name"], str)
    assert isinstance(args["count"], int)
    assert isinstance(args["ratio"], float)
    assert args["on"] is True
    assert isinstance(args["tags"][0], str)
    assert args["mode"] == "fast"
    assert isinstance(args["where"]["lat"], float)
    assert call == compose_tool_call("find", schema, "prompt").tool_call


def test_text_of_reads_both_dialects_content_shapes() -> None:
    openai_parts = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {}}]
    anthropic_blocks = [
        {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "42"}]},
        {"type": "text", "text": "thanks"},
    ]

    assert text_of(openai_parts) == "look"
    assert text_of(anthropic_blocks) == "42 thanks"
    assert text_of(None) == ""


def test_embeddings_are_unit_vectors_closer_for_shared_words() -> None:
    base = embed("the quick brown fox", 384)
    near = embed("the quick brown dog", 384)
    far = embed("quarterly revenue report", 384)

    assert base.dtype == np.float32
    assert abs(float(np.linalg.norm(base)) - 1.0) < 1e-5
    assert np.array_equal(base, embed("the quick brown fox", 384))
    assert float(base @ near) > 0.6
    assert abs(float(base @ far)) < 0.3
