"""HTTP transport shared by provider adapters: timeouts, error translation, SSE streams.

This is the one place that knows aiohttp's exceptions. Everything above it sees
``propylon.errors`` only.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Timeouts:
    """A deployment's timeouts, each bounding one thing (seconds).

    ``connect``: opening a connection; ``first_token`` (streams): from sending the request to
    the first event; ``idle`` (streams): between two events; ``response`` (non-streamed):
    from sending the request to the whole answer, which arrives all at once, so no
    first-token bound can apply to it.
    """

    connect: float
    first_token: float
    idle: float
    response: float

    @classmethod
    def of(cls, deployment: DeploymentConfig) -> Timeouts:
        return cls(
            deployment.connect_timeout,
            deployment.first_token_timeout,
            deployment.idle_timeout,
            deployment.response_timeout,
        )

    def whole_answer(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.response, sock_connect=self.connect)

    def stream(self) -> aiohttp.ClientTimeout:
        # first_token and idle are asyncio timeouts around the reads (see open_sse_stream).
        return aiohttp.ClientTimeout(total=None, sock_connect=self.connect)


@asynccontextmanager
async def translate_transport_errors(name: str, awaited: str = "") -> AsyncIterator[None]:
    """Map aiohttp and timeout errors to ``propylon.errors``, most specific first.

    ``awaited`` says what a timeout was waiting for, for its message."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise UpstreamTimeout(
            f"{name} did not accept a connection in time", after_send=False
        ) from exc
    except TimeoutError as exc:  # aiohttp's read timeouts included
        raise UpstreamTimeout(f"{name} timed out waiting for {awaited or 'an answer'}") from exc
    except aiohttp.ClientPayloadError as exc:
        raise UpstreamConnectionError(f"{name} broke off its response") from exc
    except aiohttp.ClientConnectionError as exc:
        raise UpstreamConnectionError(f"could not reach {name}: {exc.__class__.__name__}") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"{name} failed: {exc.__class__.__name__}") from exc


MAX_RETRY_AFTER_S = 86_400.0  # a longer hint is passed on as a day


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds form), if present: a
    finite number from 0 to ``MAX_RETRY_AFTER_S`` (an upstream's ``nan`` or ``inf`` is no
    hint, ``1e30`` a day: it would be a delay to wait for and a header we pass on)."""
    for name, scale in (("retry-after-ms", 1000.0), ("Retry-After", 1.0)):
        value = headers.get(name)
        if not value:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue  # Retry-After's HTTP-date form: unknown
        if math.isfinite(seconds):
            return min(max(0.0, seconds), MAX_RETRY_AFTER_S)
    return None


def relayed_error(error: object, name: str, fallback: str) -> tuple[str, str | None]:
    """The message and code of an upstream's ``error`` (an object, or a bare string), as
    relayed to the client; ``fallback`` when it says nothing."""
    if isinstance(error, dict):
        raw_code = error.get("code") or error.get("type")
        return f"{name}: {error.get('message') or fallback}", str(raw_code) if raw_code else None
    if isinstance(error, str) and error:
        return f"{name}: {error}", None
    return fallback, None


def error_from_response(
    status: int, raw: bytes, headers: Mapping[str, str], name: str
) -> UpstreamError:
    """The error for a non-2xx upstream response, carrying the upstream's own message."""
    message = f"{name} answered HTTP {status}"
    code: str | None = None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and body.get("error") is not None:
        message, code = relayed_error(body["error"], name, message)
    return upstream_error_for_status(
        status, message, retry_after=retry_after_seconds(headers), code=code
    )


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    *,
    data: bytes,
    headers: Mapping[str, str],
    timeouts: Timeouts,
    name: str,
) -> JSONObject:
    """POST a JSON body and return the JSON object answered; any failure as ``UpstreamError``."""
    async with (
        translate_transport_errors(name, f"the answer ({timeouts.response:g} s response timeout)"),
        session.post(url, data=data, headers=headers, timeout=timeouts.whole_answer()) as resp,
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
        idle_s: float,
    ) -> None:
        self._first: JSONObject | None = first
        self._rest = rest
        self._response = response
        self._name = name
        self._idle_s = idle_s

    def __aiter__(self) -> AsyncIterator[JSONObject]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[JSONObject]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        awaited = f"the next event ({self._idle_s:g} s idle timeout)"
        try:
            async with translate_transport_errors(self._name, awaited):
                while True:
                    async with asyncio.timeout(self._idle_s):
                        chunk = await anext(self._rest, None)
                    if chunk is None:
                        break
                    yield chunk
                # Read the end of the body so the keep-alive connection goes back to the pool.
                async with asyncio.timeout(self._idle_s):
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
    timeouts: Timeouts,
    name: str,
    parse: EventParser,
) -> SSEStream:
    """POST, check the status, and wait for the first parsed chunk before returning."""
    awaited = f"the first event ({timeouts.first_token:g} s first-token timeout)"
    async with translate_transport_errors(name, awaited), asyncio.timeout(timeouts.first_token):
        response = await session.post(url, data=data, headers=headers, timeout=timeouts.stream())
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
    return SSEStream(first, events, response, name, timeouts.idle)


async def sse_data(lines: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The data of each server-sent event (its ``data:`` lines joined); event names, comments
    and keep-alives are skipped, since the typed streams repeat the name as the data's
    ``type``."""
    data: list[bytes] = []
    async for line in lines:
        if not line:
            if data:
                yield b"\n".join(data)
            data = []
        elif line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
    if data:  # a last event without its blank line still counts
        yield b"\n".join(data)


async def sse_objects(lines: AsyncIterator[bytes], name: str) -> AsyncIterator[JSONObject]:
    """The JSON object of each server-sent event; anything else breaks the stream
    (``UpstreamStreamInterrupted``), since a typed stream cannot skip an event unread."""
    async for payload in sse_data(lines):
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise UpstreamStreamInterrupted(f"{name} sent an unreadable stream event") from exc
        if not isinstance(event, dict):
            raise UpstreamStreamInterrupted(f"{name} sent a stream event that is not an object")
        yield event


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for line in response.content:
        yield line.rstrip(b"\r\n")
