"""``loads_in_pieces`` decodes what orjson decodes, refuses what it refuses, and gives the event
loop a turn at least every piece of work, however the body is shaped."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import orjson
import pytest

from propylon.errors import InvalidJSON
from propylon.http.piecewise_json import loads_in_pieces

SHAPES: dict[str, Any] = {
    "one long string": {"messages": [{"role": "user", "content": "lorem ipsum " * 20_000}]},
    "non-ASCII and emoji": {"content": "漢字かな交じり文😀é" * 8_000},
    "escapes everywhere": {"content": 'a"b\\c\n\u0001\\\\\u2028' * 10_000},
    "token arrays": {"input": [[1234, -5, 6.5] * 300 for _ in range(60)]},
    "many small objects": {"messages": [{"role": "user", "content": "hi"} for _ in range(8_000)]},
    "deeper than a regex skips": {"x": [[[[[[[[1, {"a": "b"}]]]]]]] for _ in range(300)]},
    "an image part": {
        "messages": [{"content": [{"type": "image_url", "image_url": {"url": "QUJD" * 60_000}}]}]
    },
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("piece", [1024, 64 * 1024])
async def test_decodes_every_shape_as_orjson_does(shape: str, piece: int) -> None:
    for ensure_ascii, indent in [(False, None), (True, 2)]:
        raw = json.dumps(SHAPES[shape], ensure_ascii=ensure_ascii, indent=indent).encode()
        assert await loads_in_pieces(raw, piece=piece) == orjson.loads(raw)


def _random_value(rnd: random.Random, depth: int = 0) -> Any:
    kind = rnd.random()
    if depth > 8 or kind < 0.3:
        return rnd.choice([1, -2.5, 1e300, True, None, 's"\\é😀\n', "", "abc" * rnd.randint(0, 9)])
    if kind < 0.65:
        return [_random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 5))]
    names = ["", "é", "\\", '"', "😀"]
    return {
        f"k{i}{rnd.choice(names)}": _random_value(rnd, depth + 1) for i in range(rnd.randint(0, 5))
    }


async def test_cuts_anywhere_without_splitting_an_escape_or_a_character() -> None:
    rnd = random.Random(26)
    for _ in range(1_500):
        value = _random_value(rnd)
        raw = json.dumps(
            value, ensure_ascii=rnd.random() < 0.5, indent=rnd.choice([None, 1])
        ).encode()
        piece = rnd.choice([24, 25, 27, 31, 40, 100])  # pieces far smaller than the values
        assert await loads_in_pieces(raw, piece=piece, max_descents=10**9) == value, (raw, piece)


@pytest.mark.parametrize(
    "raw",
    [
        b"[1,]",
        b'{"a":1,}',
        b"[1 2]",
        b'{"a" 1}',
        b'"abc',
        b"[1,2",
        b'{"a":1}x',
        b"[tru]",
        b"{1:2}",
        b"",
        b"  ",
        b"[1,,2]",
        b'{"a":[}',
        b'"\\ud800"',
        b'"\\x"',
        b"\xff",
    ],
)
@pytest.mark.parametrize("piece", [24, 64 * 1024])
async def test_refuses_what_orjson_refuses(raw: bytes, piece: int) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    with pytest.raises(InvalidJSON):
        await loads_in_pieces(raw, piece=piece)


async def test_refuses_a_body_too_deep_throughout_with_a_clear_400() -> None:
    raw = b"[" * 300 + b"1" + b"]" * 300  # no comma to cut at: every level is descended
    assert await loads_in_pieces(raw, max_descents=1_000, max_depth=400) == orjson.loads(raw)
    with pytest.raises(InvalidJSON, match="nests too deeply"):
        await loads_in_pieces(raw, max_descents=100, max_depth=400)


@pytest.mark.parametrize("piece", [16, 4096])
async def test_refuses_nesting_past_its_depth_limit_without_exhausting_the_stack(
    piece: int,
) -> None:
    """Each level descended costs Python frames: 900 levels once overflowed the stack."""
    pad = b'"' + b"x" * 5_000 + b'"'
    for levels in (129, 300, 900):
        raw = b"[" + pad + b"," + b"[" * levels + b"1" + b"]" * levels + b"]"
        with pytest.raises(InvalidJSON, match="deeper than 128"):
            await loads_in_pieces(
                raw, piece=piece, max_depth=128, too_deep="deeper than 128 levels"
            )
    raw = b"[" + pad + b"," + b"[" * 120 + b"1" + b"]" * 120 + b"]"
    assert await loads_in_pieces(raw, piece=piece, max_depth=128) == orjson.loads(raw)


@pytest.mark.parametrize("shape", ["one long string", "token arrays", "many small objects"])
async def test_gives_the_loop_a_turn_every_piece(shape: str) -> None:
    """Counted in turns, not time: another task runs at least once per piece of the body."""
    raw = orjson.dumps(SHAPES[shape])
    piece = 16 * 1024
    turns = 0
    done = False

    async def other_task() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    try:
        await loads_in_pieces(raw, piece=piece)
    finally:
        done = True
        await other
    assert turns >= len(raw) // (2 * piece) > 4
