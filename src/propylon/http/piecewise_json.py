"""``loads_in_pieces``: a large JSON document decoded by orjson in bounded pieces, with the
event loop free between them.

orjson decodes 8 MB in one call that holds the GIL (10-40 ms on an idle core, several times
that on a loaded one), so neither the loop nor a thread can serve anyone meanwhile. Here the
document is cut where a value ends and each piece (at most ``piece`` bytes of source) goes to
orjson on its own: the members of a large object or array in runs that fit a piece, a large
string in slices joined at the end (a copy, not a parse). Where a run of members ends is first
guessed (the last ``},`` or ``,`` of the window: if orjson reads the members before it, that
comma separates two of them), else found by regular expressions with possessive quantifiers,
bounded by the piece too (linear, no backtracking); containers nested up to ``_DEPTH`` levels
are skipped whole by them, deeper ones are descended into. orjson still validates every byte,
so what it refuses is refused the same way; what differs is only the cost of bodies that nest
deeper than ``_DEPTH`` levels throughout, which ``max_descents`` bounds with a clear 400.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson

from propylon.errors import InvalidJSON

_STRING = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
_STRING_BODY = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+', re.DOTALL)
_WHITESPACE = re.compile(rb"[ \t\n\r]*+")
_SCALAR = re.compile(rb"[^,\]}\s]*+")  # a number or a literal, up to what may follow it
_HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}")
_CALL_COST = 512  # the work of one call or descent, counted in bytes of source
_DEPTH = 6  # containers nested this deep inside a split one are skipped by one regex call


def _element_patterns() -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """A run of whole members each followed by a comma, and a last member before the close."""
    nested = rb"(?!)"  # matches nothing: at depth 0 no container is skipped whole
    for _ in range(_DEPTH):
        nested = rb"[\[{](?:[^\"\[\]{}]++|" + _STRING + rb"|" + nested + rb")*+[\]}]"
    part = rb"(?:[^\"\[\]{},]++|" + _STRING + rb"|" + nested + rb")"
    member = rb"[ \t\n\r]*+(?:[^\"\[\]{},\s]|" + _STRING + rb"|" + nested + rb")" + part + rb"*+"
    return (
        re.compile(rb"(?:" + member + rb",)*+", re.DOTALL),
        re.compile(member + rb"(?=[\]}])", re.DOTALL),
    )


_RUN, _LAST = _element_patterns()
_CLOSE = {ord("["): ord("]"), ord("{"): ord("}")}


async def loads_in_pieces(
    raw: bytes | bytearray,
    *,
    piece: int = 64 * 1024,
    max_descents: int = 10_000,
    max_depth: int = 128,
    too_deep: str = "The JSON nests deeper than allowed.",
) -> Any:
    """``raw`` decoded as orjson would, its event loop free at least every ``piece`` bytes.

    Raises ``orjson.JSONDecodeError`` as orjson does, and ``InvalidJSON`` for what this
    cutting finds wrong first (an unclosed string or container, a missing comma) or when more
    than ``max_descents`` containers had to be descended into rather than skipped; with
    ``too_deep`` when arrays and objects nest deeper than ``max_depth`` levels (a body may be
    refused a few levels earlier: what orjson reads whole is not counted level by level)."""
    # A container is descended into (a frame or three each) or read whole by orjson, with
    # at most ``_DEPTH`` more levels inside: refused past ``max_depth`` levels in all.
    decoder = _Decoder(raw, piece, max_descents, max_depth - _DEPTH, too_deep)
    value, end = await decoder.value(_skip(raw, 0), 0)
    if _skip(raw, end) != len(raw):
        raise InvalidJSON(f"The request body has more after its JSON value (byte {end}).")
    return value


def _skip(raw: bytes | bytearray, pos: int) -> int:
    match = _WHITESPACE.match(raw, pos)
    return match.end() if match else pos


def _run_start(raw: bytes | bytearray, backslash: int, start: int) -> int:
    """Where the run of backslashes ending at ``backslash`` begins (not before ``start``)."""
    run = backslash
    while run > start and raw[run - 1] == ord("\\"):
        run -= 1
    return run


def _escapes(raw: bytes | bytearray, backslash: int, start: int) -> bool:
    """Whether the backslash at ``backslash`` starts an escape (an odd run of them ends there)."""
    return (backslash - _run_start(raw, backslash, start)) % 2 == 0


class _Decoder:
    def __init__(
        self, raw: bytes | bytearray, piece: int, max_descents: int, max_depth: int, too_deep: str
    ) -> None:
        self._raw = raw
        self._max_depth = max_depth
        self._too_deep = too_deep
        self._piece = piece
        self._descents_left = max_descents
        self._since_yield = 0

    async def _decoded(self, text: bytes | bytearray, at: int) -> Any:
        """One piece through orjson (``at``: where it starts in the body); a turn of the loop
        once a piece's worth was decoded."""
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InvalidJSON(
                f"The request body is not valid JSON: {exc.msg} (near byte {at + exc.pos})."
            ) from None
        await self._progress(len(text) + _CALL_COST)
        return value

    async def _progress(self, cost: int) -> None:
        """A turn of the loop once a piece's worth of work was done since the last one."""
        self._since_yield += cost
        if self._since_yield >= self._piece:
            self._since_yield = 0
            await asyncio.sleep(0)

    async def value(self, pos: int, depth: int) -> tuple[Any, int]:
        """The value starting at ``pos`` and the position just after it."""
        raw = self._raw
        if pos >= len(raw):
            raise InvalidJSON("The request body ends where a JSON value was expected.")
        first = raw[pos]
        if first == ord('"'):
            return await self._string(pos)
        if first in _CLOSE:
            return await self._container(pos, depth)
        scalar = _SCALAR.match(raw, pos, min(len(raw), pos + self._piece))
        end = scalar.end() if scalar else pos
        return await self._decoded(raw[pos:end], pos), end

    async def _string(self, pos: int) -> tuple[str, int]:
        """A string read in slices that each end before an escape and on a character's start."""
        raw, slices, start = self._raw, [], pos + 1
        while True:
            window = min(len(raw), start + self._piece)
            end = raw.find(b'"', start, window)  # memchr: the common case, no escaped quote
            if end < 0:
                end = window
            elif raw[end - 1] == ord("\\"):  # maybe escaped: the regex reads the escapes
                body = _STRING_BODY.match(raw, start, window)
                end = body.end() if body else start
            if end < len(raw) and raw[end] == ord('"'):
                slices.append(await self._decoded(b'"' + raw[start:end] + b'"', start - 1))
                return "".join(slices), end + 1
            cut = self._safe_cut(start, end)
            if cut <= start:
                raise InvalidJSON(
                    f"The request body has a string that never ends or is not UTF-8 (byte {start})."
                )
            slices.append(await self._decoded(b'"' + raw[start:cut] + b'"', start - 1))
            start = cut

    def _safe_cut(self, start: int, end: int) -> int:
        """A position at or before ``end`` where a string may be cut: not inside an escape
        (``\\uXXXX\\uXXXX`` is the longest, 12 bytes) nor inside a UTF-8 character."""
        raw = self._raw
        cut = end
        backslash = raw.rfind(b"\\", max(start, end - 12), end)
        if backslash >= 0:
            run = _run_start(raw, backslash, start)
            # Cut before the run of backslashes, or, if it starts the slice, after whole pairs.
            cut = run if run > start else start + (backslash + 1 - start) // 2 * 2
            if _HIGH_SURROGATE.fullmatch(raw, cut - 6, cut) and _escapes(raw, cut - 6, start):
                cut -= 6  # the first half of a surrogate pair stays with its second half
        while cut > start and cut < len(raw) and raw[cut] & 0xC0 == 0x80:
            cut -= 1
        return cut

    async def _container(self, pos: int, depth: int) -> tuple[Any, int]:
        """An object or array: runs of its members through orjson, large members descended."""
        if depth >= self._max_depth:
            raise InvalidJSON(self._too_deep)
        if self._descents_left <= 0:
            raise InvalidJSON(
                "The request body nests too deeply to be read in pieces; "
                f"send it smaller than {self._piece} bytes per deeply nested value."
            )
        self._descents_left -= 1
        await self._progress(_CALL_COST)
        raw = self._raw
        opening, closing = raw[pos : pos + 1], _CLOSE[raw[pos]]
        is_object = opening == b"{"
        result: Any = {} if is_object else []
        start, after_comma = pos + 1, False
        while True:
            window = min(len(raw), start + self._piece)
            guessed = await self._guessed_run(opening, closing, start, window)
            if guessed is not None:
                self._merge(result, guessed[0])
                start, after_comma = guessed[1], True
                continue
            run = _RUN.match(raw, start, window)
            if run is not None and run.end() > start:
                members = opening + raw[start : run.end() - 1] + bytes([closing])
                self._merge(result, await self._decoded(members, start - 1))
                start, after_comma = run.end(), True
                continue
            last = _LAST.match(raw, start, window)
            if last is not None:
                members = opening + raw[start : last.end()] + bytes([closing])
                self._merge(result, await self._decoded(members, start - 1))
                start = last.end()
            else:
                start = _skip(raw, start)
                if start < len(raw) and raw[start] != closing:
                    start = await self._member(result, start, depth)
                elif after_comma:
                    raise InvalidJSON(f"The request body has a comma before byte {start}.")
            start = _skip(raw, start)
            if start >= len(raw):
                raise InvalidJSON("The request body ends inside an object or array.")
            if raw[start] == closing:
                return result, start + 1
            if raw[start] != ord(","):
                raise InvalidJSON(f"The request body lacks a comma at byte {start}.")
            start, after_comma = start + 1, True

    async def _guessed_run(
        self, opening: bytes | bytearray, closing: int, start: int, window: int
    ) -> tuple[Any, int] | None:
        """The members before a comma late in the window, and the position after that comma,
        if orjson reads them as a container: cut inside a string or a nested value, the piece
        cannot be read (a string or a bracket is left open). Two guesses, then the patterns."""
        raw, tried = self._raw, -1
        after_close = max(raw.rfind(b"},", start, window), raw.rfind(b"],", start, window))
        for comma in (after_close + 1 if after_close >= 0 else -1, raw.rfind(b",", start, window)):
            if comma <= start or comma == tried:
                continue
            tried = comma
            text = opening + raw[start:comma] + bytes([closing])
            await self._progress(len(text) + _CALL_COST)
            try:
                members = orjson.loads(text)
            except orjson.JSONDecodeError:
                continue
            if members:  # not whitespace alone: a comma with nothing before it is an error
                return members, comma + 1
        return None

    async def _member(self, result: Any, pos: int, depth: int) -> int:
        """One member too large (or too deep) for a run: read on its own; its end."""
        if isinstance(result, list):
            value, end = await self.value(pos, depth + 1)
            result.append(value)
            return end
        if self._raw[pos] != ord('"'):
            raise InvalidJSON(
                f"The request body has an object key that is not a string at byte {pos}."
            )
        key, end = await self._string(pos)
        colon = _skip(self._raw, end)
        if colon >= len(self._raw) or self._raw[colon] != ord(":"):
            raise InvalidJSON(f"The request body lacks a colon at byte {colon}.")
        result[key], end = await self.value(_skip(self._raw, colon + 1), depth + 1)
        return end

    @staticmethod
    def _merge(result: Any, members: Any) -> None:
        if isinstance(result, list):
            result.extend(members)
        else:
            result.update(members)
