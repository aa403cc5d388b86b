"""One exception tree for the whole product.

Every error a user can see is a ``PropylonError``. Each class carries the HTTP status,
OpenAI's error ``type`` and ``code``, and whether a retry could succeed, so one handler in
``propylon.http`` renders them all as ``{"error": {"message", "type", "param", "code"}}``
and the gateway's retry policy reads ``retryable`` instead of matching classes.

    PropylonError                      500 server_error
    ├── InvalidRequest                 400 invalid_request_error
    │   ├── InvalidJSON                400 invalid_json
    │   ├── ContextWindowExceeded      400 context_length_exceeded
    │   └── PromptInjectionDetected    400 prompt_injection_detected
    ├── RequestTooLarge                413 request_too_large
    ├── UnsupportedEncoding            415 unsupported_media_type (a compressed body)
    ├── AuthenticationFailed           401 invalid_api_key
    ├── PermissionDenied               403 permission_denied
    │   └── ModelNotAllowed            403 model_not_allowed   (not in the key's `models`)
    ├── NotFound                       404 not_found
    │   └── ModelNotFound              404 model_not_found
    ├── Conflict                       409 conflict             (not in a state that allows it)
    ├── RateLimited                    429 rate_limit_exceeded   (Retry-After)
    ├── QuotaExceeded                  429 insufficient_quota
    ├── ClientDisconnected             499 client_disconnected   (nobody reads it)
    ├── JobFailed                      500 job_failed            (a job handler gave up)
    ├── ServiceUnavailable             503 service_unavailable   (Retry-After, retryable)
    │   └── AllDeploymentsUnavailable  503 all_deployments_unavailable
    └── UpstreamError                  502 upstream_error        (retryable)
        ├── UpstreamTimeout            504 upstream_timeout      (retryable)
        ├── UpstreamConnectionError    502 upstream_connection_error (retryable)
        ├── UpstreamRateLimited        429 upstream_rate_limited (retryable, Retry-After)
        ├── UpstreamStreamInterrupted  502 upstream_stream_interrupted (after the first byte)
        └── UpstreamRejected           4xx as the upstream said  (not retryable)
"""

from __future__ import annotations

from typing import Any, ClassVar


class PropylonError(Exception):
    """Base of every error Propylon shows to a user."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = "internal_error"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.retry_after = retry_after

    @property
    def http_status(self) -> int:
        return self.status

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error body."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class InvalidRequest(PropylonError):
    status = 400
    error_type = "invalid_request_error"
    default_code = "invalid_request"


class InvalidJSON(InvalidRequest):
    default_code = "invalid_json"


class ContextWindowExceeded(InvalidRequest):
    default_code = "context_length_exceeded"


class PromptInjectionDetected(InvalidRequest):
    default_code = "prompt_injection_detected"


class RequestTooLarge(PropylonError):
    status = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class UnsupportedEncoding(PropylonError):
    status = 415
    error_type = "invalid_request_error"
    default_code = "unsupported_media_type"


class AuthenticationFailed(PropylonError):
    status = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class PermissionDenied(PropylonError):
    status = 403
    error_type = "permission_error"
    default_code = "permission_denied"


class ModelNotAllowed(PermissionDenied):
    """The key's scope does not reach ``model`` (its public name)."""

    default_code = "model_not_allowed"

    def __init__(self, model: str) -> None:
        super().__init__(f"This API key may not use the model `{model}`.", param="model")


class NotFound(PropylonError):
    status = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFound(NotFound):
    default_code = "model_not_found"


class Conflict(PropylonError):
    """The resource is not in a state that allows the request (e.g. approving a run that
    waits for nothing)."""

    status = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class RateLimited(PropylonError):
    status = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class QuotaExceeded(PropylonError):
    status = 429
    error_type = "insufficient_quota"
    default_code = "insufficient_quota"


class ClientDisconnected(PropylonError):
    """The client hung up before its answer; the work for it was stopped
    (``http/client_watch.py``). Rendered for the logs: no one is there to read it."""

    status = 499
    error_type = "invalid_request_error"
    default_code = "client_disconnected"


class JobFailed(PropylonError):
    """A job handler's verdict that retrying cannot help (corrupt file, empty parse…).

    The job fails at once; the message becomes its ``reason``."""

    default_code = "job_failed"


class ServiceUnavailable(PropylonError):
    status = 503
    error_type = "server_error"
    default_code = "service_unavailable"
    retryable = True


class AllDeploymentsUnavailable(ServiceUnavailable):
    default_code = "all_deployments_unavailable"


class UpstreamError(PropylonError):
    """The provider failed. Raised only by provider adapters, which translate their
    transport's exceptions into these classes; nothing above them sees aiohttp errors."""

    status = 502
    error_type = "upstream_error"
    default_code = "upstream_error"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, retry_after=retry_after)
        self.upstream_status = upstream_status


class UpstreamTimeout(UpstreamError):
    """``after_send``: the request had reached the upstream, which may have done (and
    billed) the work; the retry policy decides whether to try again (``retry.timeouts``)."""

    status = 504
    default_code = "upstream_timeout"

    def __init__(self, message: str, *, after_send: bool = True) -> None:
        super().__init__(message)
        self.after_send = after_send


class UpstreamConnectionError(UpstreamError):
    default_code = "upstream_connection_error"


class UpstreamRateLimited(UpstreamError):
    status = 429
    error_type = "rate_limit_error"
    default_code = "upstream_rate_limited"


class UpstreamStreamInterrupted(UpstreamError):
    """The stream broke after bytes reached the client: it cannot be retried."""

    default_code = "upstream_stream_interrupted"
    retryable = False


class UpstreamRejected(UpstreamError):
    """The upstream refused the request itself (400, 404, 422, content policy…).

    Retrying or falling back would get the same answer, so it is relayed at once with the
    upstream's status and message."""

    error_type = "invalid_request_error"
    default_code = "upstream_rejected"
    retryable = False

    @property
    def http_status(self) -> int:
        if self.upstream_status is not None and 400 <= self.upstream_status < 500:
            return self.upstream_status
        return self.status


def upstream_error_for_status(
    status: int, message: str, *, retry_after: float | None = None, code: str | None = None
) -> UpstreamError:
    """Map an upstream HTTP status to the error class that says what to do about it."""
    if status == 429:
        return UpstreamRateLimited(
            message, retry_after=retry_after, upstream_status=status, code=code
        )
    if status in (408, 409) or status >= 500:
        return UpstreamError(message, upstream_status=status, retry_after=retry_after, code=code)
    return UpstreamRejected(message, upstream_status=status, code=code)
