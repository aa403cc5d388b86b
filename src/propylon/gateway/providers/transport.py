"""HTTP transport shared by provider adapters: timeouts, error translation, SSE streams.

This is the one place that knows aiohttp's exceptions. Everything above it sees
``propylon.errors`` only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import aiohttp
import orjson

from propylon.errors import (
    UpstreamConnectionError,
    UpstreamError,
    UpstreamStreamInterrupted,
    UpstreamTimeout,
    upstream_error_for_status,
)
from propylon.gateway.protocol import JSONObject
from propylon.settings import DeploymentConfig

EventParser = Callable[[AsyncIterator[bytes], str], AsyncIterator[JSONObject]]


def client_timeout(deployment: DeploymentConfig) -> aiohttp.ClientTimeout:
    """Connect, time-to-first-byte (and between chunks), and total limits of a deployment."""
    return aiohttp.ClientTimeout(
        total=deployment.total_timeout,
        sock_connect=deployment.connect_timeout,
        sock_read=deployment.first_token_timeout,
    )


@asynccontextmanager
async def translate_transport_errors(name: str) -> AsyncIterator[None]:
    """Map aiohttp and timeout errors to ``propylon.errors``, most specific first."""
    try:
        yield
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout(f"{name} timed out") from exc
    except aiohttp.ClientPayloadError as exc:
        raise UpstreamConnectionError(f"{name} broke off its response") from exc
    except aiohttp.ClientConnectionError as exc:
        raise UpstreamConnectionError(f"could not reach {name}: {exc.__class__.__name__}") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"{name} failed: {exc.__class__.__name__}") from exc


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``Retry-After`` (seconds form) or ``retry-after-ms``, if present."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None  # HTTP-date form: treat as unknown
    return None


def error_from_response(
    status: int, raw: bytes, headers: Mapping[str, str], name: str
) -> UpstreamError:
    """The error for a non-2xx upstream response, carrying the upstream's own message."""
    message = f"{name} answered HTTP {status}"
    code: str | None = None
    try:
        body = orjson.loads(raw)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            message = f"{name}: {err.get('message') or message}"
            raw_code = err.get("code") or err.get("type")
            code = str(raw_code) if raw_code else None
        elif isinstance(err, str):
            message = f"{name}: {err}"
    except orjson.JSONDecodeError:
        pass
    return upstream_error_for_status(
        status, message, retry_after=retry_after_seconds(headers), code=code
    )


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    *,
    data: bytes,
    headers: Mapping[str, str],
    timeout: aiohttp.ClientTimeout,
    name: str,
) -> JSONObject:
    """POST a JSON body and return the JSON object answered; any failure as ``UpstreamError``."""
    async with (
        translate_transport_errors(name),
        session.post(url, data=data, headers=headers, timeout=timeout) as resp,
    ):
        raw = await resp.read()
        if resp.status >= 400:
            raise error_from_response(resp.status, raw, resp.headers, name)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"{name} returned a body that is not JSON") from exc
    if not isinstance(body, dict):
        raise UpstreamError(f"{name} returned JSON that is not an object")
    return body


class SSEStream:
    """A provider's stream whose first chunk has already arrived (see ``ChatStream``)."""

    def __init__(
        self,
        first: JSONObject,
        rest: AsyncIterator[JSONObject],
        response: aiohttp.ClientResponse,
        name: str,
    ) -> None:
        self._first: JSONObject | None = first
        self._rest = rest
        self._response = response
        self._name = name

    def __aiter__(self) -> AsyncIterator[JSONObject]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[JSONObject]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        try:
            async with translate_transport_errors(self._name):
                async for chunk in self._rest:
                    yield chunk
                # Read the end of the body so the keep-alive connection goes back to the pool.
                await self._response.read()
        except UpstreamError as exc:
            if isinstance(exc, UpstreamStreamInterrupted):
                raise
            raise UpstreamStreamInterrupted(f"{exc.message} in the middle of a stream") from exc
        finally:
            self._response.release()

    async def aclose(self) -> None:
        self._response.close()


async def open_sse_stream(
    session: aiohttp.ClientSession,
    url: str,
    *,
    data: bytes,
    headers: Mapping[str, str],
    timeout: aiohttp.ClientTimeout,
    name: str,
    parse: EventParser,
) -> SSEStream:
    """POST, check the status, and wait for the first parsed chunk before returning."""
    async with translate_transport_errors(name):
        response = await session.post(url, data=data, headers=headers, timeout=timeout)
        try:
            if response.status >= 400:
                raw = await response.read()
                raise error_from_response(response.status, raw, response.headers, name)
            events = parse(_lines(response), name)
            try:
                first = await anext(events)
            except StopAsyncIteration:
                raise UpstreamError(f"{name} ended the stream without any event") from None
            except UpstreamStreamInterrupted as exc:
                # Nothing reached the client yet: this failure can still be retried.
                raise UpstreamConnectionError(exc.message) from exc
        except BaseException:
            response.close()
            raise
    return SSEStream(first, events, response, name)


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for line in response.content:
        yield line.rstrip(b"\r\n")
