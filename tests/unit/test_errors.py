from __future__ import annotations

import pytest

from propylon.errors import (
    AllDeploymentsUnavailable,
    ModelNotFound,
    PropylonError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    upstream_error_for_status,
)


def test_every_error_renders_openai_shape() -> None:
    error = ModelNotFound("no such model", param="model")
    assert error.http_status == 404
    assert error.to_dict() == {
        "error": {
            "message": "no such model",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def test_retry_after_becomes_a_header_in_whole_seconds() -> None:
    assert AllDeploymentsUnavailable("down", retry_after=2.4).headers() == {"Retry-After": "2"}
    assert AllDeploymentsUnavailable("down", retry_after=0.1).headers() == {"Retry-After": "1"}
    assert PropylonError("x").headers() == {}


@pytest.mark.parametrize(
    ("status", "kind", "retryable", "http_status"),
    [
        (429, UpstreamRateLimited, True, 429),
        (500, UpstreamError, True, 502),
        (503, UpstreamError, True, 502),
        (400, UpstreamRejected, False, 400),
        (401, UpstreamRejected, False, 401),
        (404, UpstreamRejected, False, 404),
        (422, UpstreamRejected, False, 422),
    ],
)
def test_upstream_status_maps_to_what_to_do_about_it(
    status: int, kind: type[UpstreamError], retryable: bool, http_status: int
) -> None:
    error = upstream_error_for_status(status, "upstream said no")
    assert type(error) is kind
    assert error.retryable is retryable
    assert error.http_status == http_status
