"""A record's content is stored per the policy: full (redacted, cut), hashed, or off."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from propylon import storable
from propylon.gateway.call import Attempt
from propylon.observe import record
from propylon.observe.record import COLUMNS, RequestRecord, render_content

MESSAGES = [{"role": "user", "content": "my key is sk-abcdefghijklmnopqrstuvwx"}]


def test_full_content_is_json_with_secrets_redacted() -> None:
    stored = render_content(MESSAGES, "full", 10_000)
    assert stored is not None
    assert orjson.loads(stored) == [{"role": "user", "content": "my key is [REDACTED]"}]


def test_full_content_is_cut_to_the_limit() -> None:
    assert render_content("x" * 100, "full", 10) == "x" * 10


def test_a_huge_prompt_is_cut_before_it_is_serialised(monkeypatch: pytest.MonkeyPatch) -> None:
    serialised: list[int] = []
    real = storable.json_text

    def spy(value: Any) -> str:
        text = real(value)
        serialised.append(len(text))
        return text

    monkeypatch.setattr(record, "json_text", spy)
    huge = [{"role": "user", "content": "sk-proj-abcdefghijklmnopqrstuvwxyz " + "x" * 8_000_000}]
    stored = render_content(huge, "full", 1000)
    assert stored is not None and len(stored) == 1000
    assert stored.startswith('[{"role":"user","content":"[REDACTED] xxx')
    assert max(serialised) < 2000


def test_hashed_content_is_a_sha256_of_the_json() -> None:
    expected = hashlib.sha256(orjson.dumps(MESSAGES)).hexdigest()
    assert render_content(MESSAGES, "hashed", 10) == f"sha256:{expected}"


def test_off_keeps_nothing() -> None:
    assert render_content(MESSAGES, "off", 10_000) is None


def test_a_row_holds_every_column_in_order() -> None:
    record = RequestRecord(
        request_id="r1",
        created_at=0.0,
        endpoint="chat",
        status=200,
        latency_ms=12.3456,
        attempts=[Attempt("a", "upstream_error", 1.0), Attempt("b", "skipped", 0.0)],
        metadata={"prompt_version": "v1"},
        content_policy="full",
        prompt=MESSAGES,
        response="an answer",
    )
    row = dict(zip(COLUMNS, record.to_row(1000), strict=True))
    assert row["attempt_count"] == 1, "skipped deployments are not calls"
    assert orjson.loads(row["attempts"])[0] == {
        "deployment": "a",
        "outcome": "upstream_error",
        "ms": 1.0,
    }
    assert row["metadata"] == '{"prompt_version":"v1"}'
    assert row["response"] == "an answer"
    assert row["created_at"].isoformat() == "1970-01-01T00:00:00+00:00"


def row_of(**fields: Any) -> dict[str, object]:
    """The stored row of a chat record with ``fields``, by column."""
    record = RequestRecord(
        request_id="r", created_at=0.0, endpoint="chat", status=200, latency_ms=1.0, **fields
    )
    return dict(zip(COLUMNS, record.to_row(10_000), strict=True))


def test_a_key_sent_as_metadata_is_not_stored_verbatim() -> None:
    key = "ppl_" + "a1b2c3d4" * 4
    stored = row_of(
        metadata={"api_key": key, "note": f"use {key}", "nested": {"token": "hunter2hunter2"}}
    )["metadata"]
    assert isinstance(stored, str) and key not in stored and "hunter2hunter2" not in stored
    assert orjson.loads(stored)["note"] == "use [REDACTED]"


def test_text_postgresql_cannot_store_is_escaped_in_every_column() -> None:
    row = row_of(
        requested_model="gpt\x00",
        content_policy="full",
        prompt=[{"role": "user", "content": "a\udc80b"}],  # orjson refuses lone surrogates
        response="x\x00y",
    )
    assert row["requested_model"] == "gpt\\u0000"
    assert row["response"] == "x\\u0000y"
    assert isinstance(row["prompt"], str) and "\\udc80" in row["prompt"]
    for value in row.values():
        if isinstance(value, str):
            value.encode("utf-8")  # storable: no lone surrogate left
            assert "\x00" not in value
