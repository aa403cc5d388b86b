"""What PostgreSQL cannot store is found (with the field's path) or escaped."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from propylon.errors import InvalidRequest
from propylon.storable import (
    check_storable,
    escape_unstorable,
    is_storable,
    jsonb_text,
    storable_json,
    unstorable_field,
)

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


JSON = st.recursive(  # what a JSON body parses to (orjson: 64-bit integers, finite floats)
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def holds_no_unstorable_string(value: object) -> bool:
    """What ``jsonb`` accepts: no string, key or value, decodes to a NUL or lone surrogate."""
    return unstorable_field(value, "") is None


def test_a_nested_jsonb_value_is_escaped_keys_and_values_alike() -> None:
    value = {"guard": {"flagged": [{"signals": ["a\x00b"]}], "k\udc80": "ok"}, "n": 1}
    stored = storable_json(value)
    assert stored == {"guard": {"flagged": [{"signals": ["a\\u0000b"]}], "k\\udc80": "ok"}, "n": 1}
    assert orjson.loads(jsonb_text(value)) == stored
    assert "\\u0000" not in jsonb_text(value).replace("\\\\u0000", "")


def test_a_storable_jsonb_value_is_passed_on_as_it_is() -> None:
    value = {"headers": {"x-propylon-route": "a=ok"}, "list": [1, "\u00e9"]}
    assert storable_json(value) is value
    assert jsonb_text(value) == orjson.dumps(value).decode()


@given(JSON, UNSTORABLE)
def test_any_json_value_holding_an_unstorable_string_becomes_jsonb_storable(
    value: object, bad: str
) -> None:
    for holder in ({"k": [value, bad]}, [{bad: value}], {"k": {"nested": bad}}):
        assert holds_no_unstorable_string(storable_json(holder))
        text = jsonb_text(holder)
        text.encode("utf-8")
        assert holds_no_unstorable_string(orjson.loads(text))
