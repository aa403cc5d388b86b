"""What one request allows the cache to do: its ``Cache-Control`` header and its
``propylon: {"cache": {...}}`` body extension, read against the configured defaults.

* ``Cache-Control: no-cache`` skips the lookup (the fresh answer is still stored);
  ``no-store`` stores nothing; both together bypass the cache.
* ``propylon.cache``: ``enabled`` (true opts a non-deterministic request in, false bypasses),
  ``semantic`` (false: exact matches only), ``semantic_threshold`` (0..1], ``ttl`` (seconds,
  capped by ``cache.max_ttl_s``).
* Without an opt-in only deterministic requests are cached: ``temperature: 0`` or a ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from propylon.errors import InvalidRequest
from propylon.gateway.protocol import JSONObject
from propylon.settings import CacheSettings

_OPTIONS = frozenset({"enabled", "semantic", "semantic_threshold", "ttl"})


@dataclass(frozen=True, slots=True)
class CacheDirective:
    """The cache's orders for one request. ``lookup`` and ``store`` both false: bypass."""

    lookup: bool
    store: bool
    semantic: bool
    threshold: float | None  # None: the model's configured threshold
    ttl_s: int

    @property
    def bypass(self) -> bool:
        return not (self.lookup or self.store)


BYPASS = CacheDirective(lookup=False, store=False, semantic=False, threshold=None, ttl_s=0)


def cache_directive(
    request: JSONObject, cache_control: str | None, settings: CacheSettings
) -> CacheDirective:
    """Read the request's cache controls; raises ``InvalidRequest`` on a malformed extension."""
    options = _extension(request)
    enabled = options.get("enabled")
    if not settings.enabled or enabled is False:
        return BYPASS
    if enabled is not True and not settings.nondeterministic and not is_deterministic(request):
        return BYPASS
    directives = _header_directives(cache_control)
    ttl = options.get("ttl", settings.ttl_s)
    return CacheDirective(
        lookup="no-cache" not in directives,
        store="no-store" not in directives,
        semantic=settings.semantic and options.get("semantic", True) is not False,
        threshold=options.get("semantic_threshold"),
        ttl_s=min(int(ttl), settings.max_ttl_s),
    )


def is_deterministic(request: JSONObject) -> bool:
    """Temperature 0 or a fixed seed: the same request should get the same answer."""
    temperature = request.get("temperature")
    seed = request.get("seed")
    return (isinstance(temperature, int | float) and temperature == 0) or (
        isinstance(seed, int) and not isinstance(seed, bool)
    )


def _header_directives(value: str | None) -> set[str]:
    if not value:
        return set()
    return {part.strip().lower().split("=", 1)[0] for part in value.split(",")}


def _extension(request: JSONObject) -> dict[str, Any]:
    extension = request.get("propylon")
    if extension is None:
        return {}
    if not isinstance(extension, dict):
        raise InvalidRequest("`propylon` must be an object.", param="propylon")
    options = extension.get("cache")
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise InvalidRequest("`propylon.cache` must be an object.", param="propylon.cache")
    for name, value in options.items():
        _check_option(name, value)
    return options


def _check_option(name: str, value: Any) -> None:
    param = f"propylon.cache.{name}"
    if name not in _OPTIONS:
        raise InvalidRequest(
            f"Unknown option `{param}`; expected one of {', '.join(sorted(_OPTIONS))}.",
            param=param,
        )
    if name in ("enabled", "semantic") and not isinstance(value, bool):
        raise InvalidRequest(f"`{param}` must be a boolean.", param=param)
    if name == "semantic_threshold" and not (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1
    ):
        raise InvalidRequest(f"`{param}` must be a number in (0, 1].", param=param)
    if name == "ttl" and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        raise InvalidRequest(f"`{param}` must be a positive integer (seconds).", param=param)
