from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken_ext.openai_public

from propylon.errors import PropylonError
from propylon.tokens import TokenCounter
from propylon.tokens import counter as counter_module

# openai-cookbook "How to count tokens with tiktoken": the API charged 129 prompt tokens for
# these on gpt-3.5-turbo-0613 and gpt-4-0613, and 124 on gpt-4o and gpt-4o-mini.
COOKBOOK_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}


@pytest.fixture
def counter() -> TokenCounter:
    return TokenCounter()


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o1-preview", "o200k_base"),
        ("o3", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("ft:gpt-4o-mini:acme::abc123", "o200k_base"),
        ("GPT-4O", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("claude-3-5-sonnet-20241022", "cl100k_base"),
        ("llama3.1:8b", "cl100k_base"),
        ("", "cl100k_base"),
    ],
)
def test_encoding_name_follows_model_family(
    counter: TokenCounter, model: str, encoding: str
) -> None:
    assert counter.encoding_name_for(model) == encoding


@pytest.mark.parametrize("model", ["gpt-4", "gpt-4o"])
def test_hello_world_is_two_tokens(counter: TokenCounter, model: str) -> None:
    assert counter.count_text("hello world", model) == 2


def test_encodes_known_token_ids(counter: TokenCounter) -> None:
    assert counter.encoding_for("gpt-4").encode_ordinary("hello world") == [15339, 1917]
    assert counter.encoding_for("gpt-4o").encode_ordinary("hello world") == [24912, 2375]


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-3.5-turbo-0613", 129), ("gpt-4-0613", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)],
)
def test_cookbook_messages_match_openai_prompt_tokens(
    counter: TokenCounter, model: str, expected: int
) -> None:
    assert counter.count_messages(COOKBOOK_MESSAGES, model) == expected


def test_name_adds_one_token_beyond_its_text(counter: TokenCounter) -> None:
    plain = counter.count_messages([{"role": "user", "content": "hi"}], "gpt-4o")
    named = counter.count_messages([{"role": "user", "content": "hi", "name": "bob"}], "gpt-4o")

    assert named - plain == counter.count_text("bob", "gpt-4o") + 1


def test_empty_conversation_costs_only_the_reply_priming(counter: TokenCounter) -> None:
    assert counter.count_messages([], "gpt-4o") == 3


def test_content_parts_count_text_and_a_fixed_estimate_per_image(counter: TokenCounter) -> None:
    as_string = counter.count_messages([{"role": "user", "content": "Describe this"}], "gpt-4o")
    as_parts = counter.count_messages(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe this"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                ],
            }
        ],
        "gpt-4o",
    )

    assert as_parts == as_string + counter_module.IMAGE_TOKENS


def test_tool_calls_count_function_name_and_arguments(counter: TokenCounter) -> None:
    arguments = '{"location": "Paris, France"}'
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_current_weather", "arguments": arguments},
            }
        ],
    }

    expected = (
        3
        + counter.count_text("assistant", "gpt-4o")
        + counter.count_text("get_current_weather", "gpt-4o")
        + counter.count_text(arguments, "gpt-4o")
        + 3
    )
    assert counter.count_messages([message], "gpt-4o") == expected


def test_tool_result_counts_its_call_id_and_content(counter: TokenCounter) -> None:
    message = {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees"}

    expected = 3 + sum(counter.count_text(v, "gpt-4") for v in message.values()) + 3
    assert counter.count_messages([message], "gpt-4") == expected


def test_tools_count_the_compact_json_of_each_function_spec(counter: TokenCounter) -> None:
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    spec_json = json.dumps(WEATHER_TOOL["function"], separators=(",", ":"))

    without = counter.count_messages(messages, "gpt-4o")
    with_tools = counter.count_messages(messages, "gpt-4o", tools=[WEATHER_TOOL])

    assert with_tools - without == counter.count_text(spec_json, "gpt-4o")


@pytest.mark.parametrize("model", ["gpt-4", "gpt-4o"])
def test_special_token_text_is_counted_as_plain_text(counter: TokenCounter, model: str) -> None:
    text = "<|endoftext|><|endofprompt|><|fim_prefix|>"

    assert counter.count_text(text, model) > 3
    assert counter.count_messages([{"role": "user", "content": text}], model) > 9


def _cyclic() -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "loop"}
    spec["self"] = spec
    return spec


ODD_REQUESTS: list[tuple[Any, Any]] = [
    ([{"role": "user", "content": None}], None),
    ([{"role": "user", "content": "lone surrogate \ud800"}], None),
    ([{"role": "user"}], None),
    ([{}], None),
    ([{"role": None, "content": 42, "name": None}], None),
    ([{"role": "user", "content": [None, 7, "bare string", {}, {"type": None}]}], None),
    (
        [{"role": "user", "content": [{"type": ["unhashable"]}, {"type": "text", "text": None}]}],
        None,
    ),
    ([{"role": "user", "content": [{"type": "file", "file": {"file_data": "AAAA"}}]}], None),
    ([{"role": "user", "content": {"type": "text", "text": "a dict, not a list"}}], None),
    ([{"role": "assistant", "tool_calls": None}], None),
    ([{"role": "assistant", "tool_calls": "nope"}], None),
    (
        [{"role": "assistant", "tool_calls": [None, {}, {"function": None}, {"function": "x"}]}],
        None,
    ),
    (
        [{"role": "assistant", "tool_calls": [{"function": {"name": 1, "arguments": {"a": 1}}}]}],
        None,
    ),
    ([{"role": "assistant", "function_call": {"name": "f", "arguments": [1, 2]}}], None),
    ([{"role": "assistant", "function_call": "f"}], None),
    ([None, "hello", 3, ["role", "user"]], None),
    (None, None),
    ("not a list", "not a list"),
    ([], [None, "tool", {}, {"function": None}, {"type": "custom", "custom": {"name": "x"}}]),
    ([], [{"function": _cyclic()}, {"function": {(1, 2): "tuple key"}}]),
    ([], [{"function": {"name": "f", "parameters": {"default": object()}}}]),
]


@pytest.mark.parametrize(("messages", "tools"), ODD_REQUESTS)
@pytest.mark.parametrize("model", ["gpt-4", "gpt-4o"])
def test_odd_shapes_are_counted_without_raising(
    counter: TokenCounter, messages: Any, tools: Any, model: str
) -> None:
    assert counter.count_messages(messages, model, tools=tools) >= 3


def test_specs_match_tiktoken_public_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    downloads: list[tuple[str, str]] = []

    def record_download(url: str, expected_hash: str) -> dict[bytes, int]:
        downloads.append((url, expected_hash))
        return {}

    monkeypatch.setattr(tiktoken_ext.openai_public, "load_tiktoken_bpe", record_download)

    for name, spec in counter_module._SPECS.items():
        public = tiktoken_ext.openai_public.ENCODING_CONSTRUCTORS[name]()
        url, expected_hash = downloads.pop()
        assert url.endswith("/" + spec.file)
        assert expected_hash == spec.sha256
        assert public["pat_str"] == spec.pat_str
        assert public["special_tokens"] == spec.special_tokens


def test_rejects_a_bpe_file_whose_sha256_does_not_match() -> None:
    spec = dataclasses.replace(counter_module._SPECS["cl100k_base"], sha256="0" * 64)

    with pytest.raises(PropylonError, match="corrupt"):
        counter_module._build_encoding("cl100k_base", spec)


def test_concurrent_first_use_loads_each_encoding_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(counter_module, "_loaded", {})
    builds: list[str] = []
    real_build = counter_module._build_encoding

    def counting_build(name: str, spec: Any) -> tiktoken.Encoding:
        builds.append(name)
        return real_build(name, spec)

    monkeypatch.setattr(counter_module, "_build_encoding", counting_build)
    counter = TokenCounter()
    seen: list[tiktoken.Encoding] = []
    threads = [
        threading.Thread(target=lambda: seen.append(counter.encoding_for("gpt-4")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert builds == ["cl100k_base"]
    assert len(seen) == 8
    assert all(encoding is seen[0] for encoding in seen)


OFFLINE_SCRIPT = textwrap.dedent(
    """
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network disabled by test")

    socket.socket.connect = refuse
    socket.getaddrinfo = refuse

    from propylon.tokens import TokenCounter

    counter = TokenCounter()
    print(counter.count_text("hello world", "gpt-4"), counter.count_text("hello world", "gpt-4o"))

    import tiktoken

    try:
        tiktoken.get_encoding("cl100k_base")
    except Exception:
        print("stock tiktoken could not download")
    else:
        print("stock tiktoken reached the network")
    """
)


def test_counts_with_networking_disabled_and_an_empty_tiktoken_cache(tmp_path: Path) -> None:
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()

    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT],
        env={"TIKTOKEN_CACHE_DIR": str(cache), "PYTHONWARNINGS": "error"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["2 2", "stock tiktoken could not download"]
    assert list(cache.iterdir()) == []


def test_preload_of_some_models_loads_their_encodings_and_cl100k_only() -> None:
    code = (
        "from propylon.tokens import counter; "
        "counter.TokenCounter().preload(['local/extractive', 'claude-sonnet-4']); "
        "print(','.join(sorted(counter._loaded)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "cl100k_base"  # o200k_base (~40 MB) waits for a gpt-4o
