"""`GET /v1/logs`, `GET /v1/logs/{id}`, `POST /v1/feedback` and `GET /v1/stats`: the
request log, read back and annotated; `GET /v1/traces`: the stored spans."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from propylon.errors import AuthenticationFailed
from propylon.http.auth import authenticate, authenticate_admin
from propylon.http.context import services
from propylon.http.json import json_response, read_json_object
from propylon.http.openapi import JSON_OBJECT_BODY
from propylon.observe.feedback import Feedback
from propylon.observe.log_export import FORMATS, export_format
from propylon.observe.logs_query import LogFilter
from propylon.observe.stats import parse_window
from propylon.observe.trace_query import subject_of
from propylon.principal import Principal

router = APIRouter()


@router.get("/v1/logs", tags=["observability"])
async def get_logs(request: Request) -> Response:
    """Recorded requests, newest first: the caller's tenant (every tenant for an operator).
    Prompts and answers only for keys with the `logs:read` feature (`content_withheld`
    otherwise). Filters: `since`, `until`, `model`, `status`, `cache_status`, `request_id`,
    `metadata.<key>=<value>`, `guard`, `key_prefix`, `origin`, `q` (free text over prompts and
    answers; `logs:read`), `tenant_id` (operator); paging with `before` and `limit`."""
    principal = await _reader(request)
    query = LogFilter.from_params(request.query_params.multi_items())
    return json_response(await services(request).observe.logs(principal, query))


@router.get("/v1/logs/export", tags=["observability"])
async def export_logs(request: Request) -> Response:
    """Every record `GET /v1/logs` would list for the same filters, newest first, as a file:
    `format=jsonl` (default) or `csv`; at most 1,000,000 rows."""
    principal = await _reader(request)
    format = export_format(request.query_params.get("format"))
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "format"]
    query = LogFilter.from_params(params)
    body = await services(request).observe.export(principal, query, format)
    disposition = f'attachment; filename="propylon-requests.{format}"'
    return StreamingResponse(
        body, media_type=FORMATS[format], headers={"Content-Disposition": disposition}
    )


@router.get("/v1/logs/{log_id}", tags=["observability"])
async def get_log(log_id: str, request: Request) -> Response:
    """One request by its `id` or request id: the record, its messages and answer
    (`logs:read`), tool calls, each attempt of its route, where its time went, the headers
    the client got, the calls made for it (`children`) and its feedback. 404 for another
    tenant's."""
    principal = await _reader(request)
    return json_response(await services(request).observe.log(principal, log_id))


@router.post("/v1/feedback", tags=["observability"], openapi_extra=JSON_OBJECT_BODY)
async def post_feedback(request: Request) -> Response:
    """Feedback on one request of the key's tenant: `request_id` or `response_id`, `score`
    (a number, or `up` / `down`), `comment`, `metadata`. 201 with the stored feedback; 404
    when the tenant has no such request."""
    principal = await authenticate(request)
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes)
    stored = await svc.observe.feedback(principal, Feedback.parse(body))
    return json_response(stored, status=201)


@router.get("/v1/stats", tags=["observability"])
async def get_stats(request: Request) -> Response:
    """Aggregates over `window` (e.g. `15m`, `1h`, `7d`; default `1h`): requests per minute,
    latency and time-to-first-token percentiles, cache hit rates, error rate, tokens and cost
    by key, model and prompt version (`metadata.prompt_name` / `prompt_version`)."""
    principal = await _reader(request)
    window = parse_window(request.query_params.get("window"))
    tenant = request.query_params.get("tenant_id")
    return json_response(await services(request).observe.stats(principal, window, tenant))


@router.get("/v1/stats/prompt-versions", tags=["observability"])
async def get_prompt_versions(request: Request) -> Response:
    """Each version of each prompt (`metadata.prompt_name` / `prompt_version`; one prompt with
    `prompt_name`) over `window` (default `1h`): volume, latency p50/p95, error rate, tokens
    and cost per request, cache hit rate, guard flags and mean feedback score."""
    principal = await _reader(request)
    params = request.query_params
    window = parse_window(params.get("window"))
    versions = await services(request).observe.prompt_versions(
        principal, window, params.get("prompt_name"), params.get("tenant_id")
    )
    return json_response(versions)


@router.get("/v1/traces/{trace_id}", tags=["observability"])
async def get_trace(trace_id: str, request: Request) -> Response:
    """One stored trace: its spans (name, parent, start, duration, status, attributes such as
    the retrieved chunks and their scores), oldest first. 404 for another tenant's."""
    principal = await _reader(request)
    return json_response(await services(request).observe.trace(principal, trace_id))


@router.get("/v1/traces", tags=["observability"])
async def find_traces(request: Request) -> Response:
    """The stored traces of one request (`request_id`), run (`run_id`) or ingestion job
    (`job_id`) of the caller's tenant, newest first, each with its spans."""
    principal = await _reader(request)
    subject = subject_of(dict(request.query_params))
    return json_response(await services(request).observe.traces(principal, subject))


async def _reader(request: Request) -> Principal:
    """An API key (its tenant's records; an operator key: every tenant's), or the admin key."""
    try:
        return await authenticate(request)
    except AuthenticationFailed:
        return await authenticate_admin(request)
