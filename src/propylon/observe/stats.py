"""Aggregates of the request log over a window: ``GET /v1/stats``."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from propylon.db.database import Database
from propylon.errors import InvalidRequest
from propylon.observe.queries import query
from propylon.params import int_param
from propylon.principal import Principal

MAX_WINDOW = timedelta(days=31)
SERIES_POINTS = 30  # buckets of a prompt version's time series
_WINDOW = re.compile(r"([0-9]+)([smhd])")
_UNITS = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}


def parse_window(value: str | None) -> timedelta:
    """``15m``, ``1h``, ``7d``… (default ``1h``, at most 31 days)."""
    if value is None:
        return timedelta(hours=1)
    match = _WINDOW.fullmatch(value.strip())
    if not match:
        raise InvalidRequest("`window` must look like 15m, 1h or 7d.", param="window")
    unit = _UNITS[match[2]]
    count = int_param(
        match[1], "window", 1, MAX_WINDOW // unit, "`window` must be between 1s and 31d."
    )
    return count * unit


async def request_stats(
    database: Database,
    principal: Principal,
    window: timedelta,
    *,
    tenant_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Rates, percentiles, cache hit rates, tokens, cost and cost saved by the cache for the
    caller's tenant (every tenant, or ``tenant_id``, for an admin) over the ``window`` ending
    ``now``: user traffic, with the calls Propylon made for itself apart (``internal``)."""
    params = _window(principal, window, tenant_id, now)
    since, until = params["since"], params["until"]
    async with database.connection() as conn:
        summary = await (await conn.execute(query("stats_summary"), params)).fetchone()
        minutes = await (await conn.execute(query("stats_per_minute"), params)).fetchall()
        groups = await (await conn.execute(query("stats_groups"), params)).fetchall()
        internal = await (await conn.execute(query("stats_internal"), params)).fetchone()
    assert summary is not None and internal is not None
    requests = int(summary["requests"])
    lookups = int(summary["cache_lookups"])
    return {
        "object": "stats",
        "since": since.isoformat(),
        "until": until.isoformat(),
        "window_s": window.total_seconds(),
        "requests": requests,
        "requests_per_minute": requests / (window.total_seconds() / 60.0),
        "error_rate": _ratio(summary["errors"], requests),
        "latency_ms": _percentiles(summary, "latency", (50, 95, 99)),
        "ttft_ms": _percentiles(summary, "ttft", (50, 95, 99)),
        "overhead_ms": _percentiles(summary, "overhead", (50, 95)),
        "cache": {
            "lookups": lookups,
            "hit_rate": _ratio(
                int(summary["cache_exact_hits"]) + int(summary["cache_semantic_hits"]), lookups
            ),
            "exact_hit_rate": _ratio(summary["cache_exact_hits"], lookups),
            "semantic_hit_rate": _ratio(summary["cache_semantic_hits"], lookups),
            # Would-be semantic hits sampled and answered by the upstream instead: the share
            # whose answers disagreed estimates how often a semantic hit is wrong.
            "semantic_verified": int(summary["cache_verified"]),
            "semantic_observed_wrong_rate": _ratio(
                summary["cache_verified_wrong"], int(summary["cache_verified"])
            ),
            # The error bound the samples support: the rate of wrong semantic hits is below
            # this with 95 % confidence (Wilson score interval, one-sided).
            "semantic_wrong_rate_upper_95": _upper_95(
                int(summary["cache_verified_wrong"]), int(summary["cache_verified"])
            ),
        },
        "tokens": {
            "prompt": int(summary["prompt_tokens"]),
            "completion": int(summary["completion_tokens"]),
            "cached": int(summary["cached_tokens"]),
        },
        "cost_usd": float(summary["cost_usd"]),
        "cost_saved_usd": float(summary["cost_saved_usd"]),
        "internal": {
            "requests": int(internal["requests"]),
            "error_rate": _ratio(internal["errors"], int(internal["requests"])),
            "latency_ms": _percentiles(internal, "latency", (50, 95)),
            "tokens": {
                "prompt": int(internal["prompt_tokens"]),
                "completion": int(internal["completion_tokens"]),
            },
            "cost_usd": float(internal["cost_usd"]),
        },
        "per_minute": [
            {
                "minute": row["minute"].isoformat(),
                "requests": int(row["requests"]),
                "errors": int(row["errors"]),
                "internal_requests": int(row["internal_requests"]),
                "latency_ms_p50": _float(row["latency_p50"]),
                "latency_ms_p95": _float(row["latency_p95"]),
                "ttft_ms_p95": _float(row["ttft_p95"]),
                "cost_saved_usd": float(row["cost_saved_usd"]),
            }
            for row in minutes
        ],
        "by_key": [{"key_prefix": g["key_prefix"], **_group(g)} for g in groups if g["by_key"]],
        "by_model": [{"model": g["requested_model"], **_group(g)} for g in groups if g["by_model"]],
        "by_prompt_version": [
            {"prompt_name": g["prompt_name"], "prompt_version": g["prompt_version"], **_group(g)}
            for g in groups
            if g["by_prompt"] and (g["prompt_name"] is not None or g["prompt_version"] is not None)
        ],
    }


def _window(
    principal: Principal, window: timedelta, tenant_id: str | None, now: datetime | None
) -> dict[str, Any]:
    """The query parameters of a window ending ``now``, in the caller's tenant (an
    operator's choice of ``tenant_id``, or every tenant)."""
    until = now or datetime.now(UTC)
    return {
        "since": until - window,
        "until": until,
        "tenant_id": principal.reading_tenant(tenant_id),
    }


def _group(row: dict[str, Any]) -> dict[str, Any]:
    requests = int(row["requests"])
    return {
        "requests": requests,
        "error_rate": _ratio(row["errors"], requests),
        "latency_ms_p50": _float(row["latency_p50"]),
        "latency_ms_p95": _float(row["latency_p95"]),
        "ttft_ms_p50": _float(row["ttft_p50"]),
        "cache_hit_rate": _ratio(row["cache_hits"], int(row["cache_lookups"])),
        "prompt_tokens": int(row["prompt_tokens"]),
        "completion_tokens": int(row["completion_tokens"]),
        "cost_usd": float(row["cost_usd"]),
        "cost_saved_usd": float(row["cost_saved_usd"]),
    }


def _percentiles(row: dict[str, Any], name: str, points: tuple[int, ...]) -> dict[str, Any]:
    return {f"p{p}": _float(row[f"{name}_p{p}"]) for p in points}


def _ratio(part: Any, whole: int) -> float | None:
    return int(part) / whole if whole else None


def _upper_95(wrong: int, verified: int) -> float | None:
    """One-sided 95 % Wilson upper bound of a share seen as ``wrong`` of ``verified``."""
    if not verified:
        return None
    z = 1.645
    share = wrong / verified
    centre = share + z * z / (2 * verified)
    spread = z * math.sqrt(share * (1 - share) / verified + z * z / (4 * verified * verified))
    return min(1.0, (centre + spread) / (1 + z * z / verified))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


async def prompt_versions(
    database: Database,
    principal: Principal,
    window: timedelta,
    *,
    prompt_name: str | None = None,
    tenant_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Each version of each prompt (or of ``prompt_name``) over the ``window``: volume,
    latency p50/p95, error rate, tokens and cost per request, cache hit rate, guard flags and
    the mean feedback score; with ``prompt_name``, each version's ``series`` too: the same
    figures per bucket of ``step_s`` (a thirtieth of the window, at least a minute)."""
    params = {
        **_window(principal, window, tenant_id, now),
        "prompt_name": prompt_name,
        "step_s": None,
    }
    since, until = params["since"], params["until"]
    step_s = max(60.0, round(window.total_seconds() / SERIES_POINTS / 60.0) * 60.0)
    async with database.connection() as conn:
        rows = await (await conn.execute(query("prompt_versions"), params)).fetchall()
        buckets = (
            await (
                await conn.execute(query("prompt_versions"), {**params, "step_s": step_s})
            ).fetchall()
            if prompt_name is not None
            else []
        )
    data = [_version(row) for row in rows]
    if prompt_name is not None:
        series: dict[str | None, list[dict[str, Any]]] = {}
        for row in buckets:
            point = {"time": row["bucket"].isoformat(), **_version(row)}
            del point["prompt_name"], point["prompt_version"]
            series.setdefault(row["prompt_version"], []).append(point)
        for version in data:
            version["series"] = series.get(version["prompt_version"], [])
    return {
        "object": "list",
        "since": since.isoformat(),
        "until": until.isoformat(),
        "step_s": step_s if prompt_name is not None else None,
        "data": data,
    }


def _version(row: dict[str, Any]) -> dict[str, Any]:
    requests = int(row["requests"])
    return {
        "prompt_name": row["prompt_name"],
        "prompt_version": row["prompt_version"],
        "requests": requests,
        "error_rate": _ratio(row["errors"], requests),
        "latency_ms_p50": _float(row["latency_p50"]),
        "latency_ms_p95": _float(row["latency_p95"]),
        "prompt_tokens_per_request": _float(row["prompt_tokens_per_request"]),
        "completion_tokens_per_request": _float(row["completion_tokens_per_request"]),
        "cost_usd_per_request": _float(row["cost_usd_per_request"]),
        "cache_hit_rate": _ratio(row["cache_hits"], int(row["cache_lookups"])),
        "guard_flags": int(row["guard_flags"]),
        "feedback_count": int(row["feedback_count"]),
        "feedback_score": _float(row["feedback_score"]),
    }
