"""JSON read back from PostgreSQL is always something orjson can write back."""

from __future__ import annotations

import math

import orjson
import pytest

from propylon.db.json_loads import loads


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"100000000000000000000", 1e20),  # jsonb's way of writing a client's 1e20
        (b"18446744073709551616", 2.0**64),
        (b"-9223372036854775809", -(2.0**63)),
        (b"1" + b"0" * 400, math.inf),  # past a double: orjson refuses it, the fallback reads it
        (b"-" + b"9" * 5000, -math.inf),  # longer than int() reads
    ],
)
def test_an_integer_orjson_cannot_write_is_read_as_a_float(text: bytes, expected: float) -> None:
    value = loads(text)
    assert isinstance(value, float) and value == expected
    orjson.dumps(value)


@pytest.mark.parametrize("number", [0, -(2**63), 2**64 - 1, 9007199254740993])
def test_an_integer_orjson_can_write_stays_an_exact_int(number: int) -> None:
    for text in (str(number).encode(), f'{{"n": [{number}]}}'.encode()):
        assert orjson.dumps(loads(text)) == text.replace(b" ", b"")


def test_what_orjson_refuses_is_read_by_the_standard_library_the_same_way() -> None:
    assert loads(memoryview(b'{"s": "\\ud800", "n": 100000000000000000000, "m": 7}')) == {
        "s": "\ud800",
        "n": 1e20,
        "m": 7,
    }
