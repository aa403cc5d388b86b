"""What PostgreSQL cannot store is found (with the field's path) or escaped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from propylon.errors import InvalidRequest
from propylon.storable import check_storable, escape_unstorable, is_storable, unstorable_field

UNSTORABLE = st.sampled_from(["\x00", "\ud800", "\udc80", "\udfff"])


def test_the_first_offending_field_is_named_by_its_path() -> None:
    body = {"name": "ok", "metadata": {"tags": ["fine", "bad\x00"]}}
    assert unstorable_field(body, "") == "metadata.tags[1]"
    assert unstorable_field({"k\x00": 1}, "metadata") == "metadata"
    assert unstorable_field({"name": "ok", "n": 3, "x": None}, "") is None


def test_a_refusal_is_a_400_naming_the_field() -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_storable({"filter": {"owner": "\x00"}})
    assert (refused.value.status, refused.value.param) == (400, "filter.owner")
    assert refused.value.code == "unstorable_text"


def test_nesting_deeper_than_python_recurses_is_walked() -> None:
    deep: list[object] = []
    inner = deep
    for _ in range(5_000):
        nested: list[object] = []
        inner.append(nested)
        inner = nested
    inner.append("\x00")
    assert unstorable_field(deep, "x") is not None


@given(st.text(), UNSTORABLE, st.text())
def test_escaping_leaves_text_postgresql_can_store(head: str, bad: str, tail: str) -> None:
    escaped = escape_unstorable(head + bad + tail)
    assert is_storable(escaped)
    escaped.encode("utf-8")
    assert f"\\u{ord(bad):04x}" in escaped


@given(st.text())
def test_storable_text_is_left_as_it_is(text: str) -> None:
    if is_storable(text):
        assert escape_unstorable(text) is text
