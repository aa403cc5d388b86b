"""The numbers of a limit or a budget (``rpm``, ``tpm``, ``tokens``, ``cost_usd``): checked
where an operator gives them (``count``, ``dollars``), bounded where a row is read back
(``stored_count``).

An amount is at most ``MAX_AMOUNT``, 2^53: up to there every whole number is exact as a
double, which the limiter computes in (a ``Charge``, and Redis's Lua numbers), and orjson
writes it. Before this check ``{"rpm": 1e40}`` was kept as a 41-digit integer no response
could hold, ``true`` as 1, ``"7"`` as 7 and ``1.9`` as 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from propylon.errors import InvalidRequest

MAX_AMOUNT = 2**53


def count(raw: Mapping[str, Any], name: str, where: str, *, low: int) -> int | None:
    """``raw[name]`` as a whole number from ``low`` to ``MAX_AMOUNT`` (``None`` when absent);
    anything else is a 400 naming ``where.name``."""
    value = _checked(raw, name, where, low=low, whole=True)
    return None if value is None else int(value)


def dollars(raw: Mapping[str, Any], name: str, where: str) -> float | None:
    """``raw[name]`` as a number from 0 to ``MAX_AMOUNT`` (``None`` when absent); anything
    else is a 400 naming ``where.name``."""
    value = _checked(raw, name, where, low=0, whole=False)
    return None if value is None else float(value)


def stored_count(value: Any) -> int | None:
    """A count as a row holds it, at most ``MAX_AMOUNT``: a row written before counts were
    checked may hold more (read back as a float, ``db/json_loads.py``); such a limit was
    never reachable, and stays so."""
    return None if value is None else min(int(value), MAX_AMOUNT)


def _checked(
    raw: Mapping[str, Any], name: str, where: str, *, low: int, whole: bool
) -> int | float | None:
    value = raw.get(name)
    if value is None:
        return None
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    # The range first: ``int()`` of NaN raises, and NaN is in no range.
    if number is None or not low <= number <= MAX_AMOUNT or (whole and number != int(number)):
        kind = "a whole number" if whole else "a number"
        raise InvalidRequest(
            f"`{where}.{name}` must be {kind} from {low} to 2^53.",
            param=f"{where}.{name}",
        )
    return number
