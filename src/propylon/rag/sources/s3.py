"""``s3`` sources: the objects under a prefix of a bucket of any S3-compatible store.

Two calls of the S3 REST API, signed with AWS Signature Version 4: ``ListObjectsV2`` (paged
by continuation token; each object's ETag is its version) and ``GetObject``. Path-style
addresses (``{endpoint}/{bucket}/{key}``), which AWS, MinIO, Ceph, Garage and moto all
answer. The secret key lives in the source's ``secret`` column: it is never returned, never
logged and never put in a job's payload or events; the access key id is shown masked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from propylon.rag.errors import DocumentRejected
from propylon.rag.sources.connector import (
    InvalidSource,
    ItemRejected,
    KnownItem,
    SourceItem,
    SourceUnavailable,
)
from propylon.rag.sources.web import WebLimits, check_host, read_capped

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def s3_config(config: dict[str, Any], secret: str | None) -> dict[str, Any]:
    """The stored configuration of an s3 source; ``InvalidSource`` when incomplete."""
    for name in ("endpoint", "bucket", "access_key_id"):
        if not isinstance(config.get(name), str) or not config[name]:
            raise InvalidSource(f"An `s3` source needs `{name}`.", param=name)
    if not secret:
        raise InvalidSource("An `s3` source needs `secret_access_key`.", param="secret_access_key")
    try:
        endpoint = urlsplit(config["endpoint"])
        usable = endpoint.scheme in ("http", "https") and bool(endpoint.hostname)
        _ = endpoint.port
    except ValueError:
        usable = False
    if not usable:
        raise InvalidSource("`endpoint` must be an http(s) URL.", param="endpoint")
    prefix, region = config.get("prefix", ""), config.get("region", "us-east-1")
    if not isinstance(prefix, str) or not isinstance(region, str):
        raise InvalidSource("`prefix` and `region` must be strings.", param="prefix")
    return {
        "endpoint": config["endpoint"].rstrip("/"),
        "bucket": config["bucket"],
        "prefix": prefix,
        "region": region,
        "access_key_id": config["access_key_id"],
    }


class S3Connector:
    def __init__(self, config: dict[str, Any], secret: str | None, limits: WebLimits) -> None:
        self._config = s3_config(config, secret)
        self._signer = SigV4(self._config["access_key_id"], secret or "", self._config["region"])
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> S3Connector:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._limits.timeout_s)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def items(self, known: Mapping[str, KnownItem]) -> AsyncIterator[SourceItem]:
        # Listing gives each version without reading the bytes: ``known`` is the sync's.
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": self._config["prefix"]}
            if token:
                query["continuation-token"] = token
            body = await self._get("", query)
            try:
                # lxml is imported only when a source syncs, not with the app
                from propylon.rag.parsing.xml import parse_xml

                root = parse_xml(body, "The bucket listing")
            except DocumentRejected as exc:
                raise SourceUnavailable(exc.message) from None
            for entry in root.iter(f"{_NS}Contents"):
                key = entry.findtext(f"{_NS}Key") or ""
                if not key or key.endswith("/"):
                    continue
                etag = (entry.findtext(f"{_NS}ETag") or "").strip('"') or None
                size = int(entry.findtext(f"{_NS}Size") or 0)
                name = key.rsplit("/", 1)[-1]
                if size > self._limits.max_bytes:
                    yield SourceItem(key, etag, name, rejected=f"larger than {size:,} bytes")
                else:
                    yield SourceItem(key, etag, name)
            truncated = (root.findtext(f"{_NS}IsTruncated") or "").lower() == "true"
            token = root.findtext(f"{_NS}NextContinuationToken")
            if not truncated or not token:
                return

    async def fetch(self, item: SourceItem) -> bytes:
        return await self._get(item.key, {}, missing_ok=True)

    async def _get(self, key: str, query: dict[str, str], *, missing_ok: bool = False) -> bytes:
        assert self._session is not None, "use the connector inside `async with`"
        endpoint, bucket = self._config["endpoint"], self._config["bucket"]
        await check_host(endpoint, self._limits.hosts)
        path = "/" + quote(bucket, safe="") + ("/" + quote(key, safe="/~") if key else "")
        url = endpoint + path
        headers = self._signer.headers("GET", url, query, dt.datetime.now(dt.UTC))
        target = URL(url + ("?" + canonical_query(query) if query else ""), encoded=True)
        try:
            async with self._session.get(target, headers=headers) as response:
                if response.status == 404 and missing_ok:
                    raise ItemRejected(f"`{key}` is gone.")
                if response.status >= 400:
                    raise SourceUnavailable(
                        f"S3 GET {bucket}/{key} answered {response.status}: "
                        f"{_s3_error(await response.read())}"
                    )
                return await read_capped(response, self._limits.max_bytes, key)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SourceUnavailable(
                f"S3 GET {bucket}/{key} failed: {exc or type(exc).__name__}."
            ) from None


class SigV4:
    """AWS Signature Version 4 for bodiless S3 requests (the headers that sign one)."""

    def __init__(self, access_key_id: str, secret: str, region: str) -> None:
        self._access_key_id = access_key_id
        self._secret = secret
        self._region = region

    def __repr__(self) -> str:  # never the secret, whatever logs this object
        return f"SigV4(access_key_id={mask(self._access_key_id)!r}, region={self._region!r})"

    def headers(
        self, method: str, url: str, query: dict[str, str], now: dt.datetime
    ) -> dict[str, str]:
        parts = urlsplit(url)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        signed = {
            "host": parts.netloc,
            "x-amz-content-sha256": _EMPTY_SHA256,
            "x-amz-date": amz_date,
        }
        names = ";".join(sorted(signed))
        canonical = "\n".join(
            [
                method,
                parts.path or "/",
                canonical_query(query),
                "".join(f"{k}:{signed[k]}\n" for k in sorted(signed)),
                names,
                _EMPTY_SHA256,
            ]
        )
        scope = f"{day}/{self._region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = f"AWS4{self._secret}".encode()
        for part in (day, self._region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        return {
            "x-amz-content-sha256": _EMPTY_SHA256,
            "x-amz-date": amz_date,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={self._access_key_id}/{scope}, "
            f"SignedHeaders={names}, Signature={signature}",
        }


def canonical_query(query: dict[str, str]) -> str:
    """The query string as SigV4 signs it (and as it is sent, so the two never differ)."""
    return "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items())
    )


def mask(value: str) -> str:
    """Enough of an identifier to recognise it, not to use it."""
    return "****" + value[-4:] if len(value) > 8 else "****"


def _s3_error(body: bytes) -> str:
    try:
        from propylon.rag.parsing.xml import parse_xml

        root = parse_xml(body, "The error")
    except DocumentRejected:
        return body[:200].decode("utf-8", "replace")
    code, message = root.findtext("Code") or "", root.findtext("Message") or ""
    return f"{code} {message}".strip() or "no detail"
