"""Who is calling: every `/v1` route starts by authenticating its request.

``Authorization: Bearer <key>`` (or ``x-api-key: <key>``, Anthropic's header). Missing or
unknown key → 401 ``invalid_api_key`` (also while the database is down: keys are held in
memory, see ``propylon.access.directory``); revoked → 403 ``api_key_revoked``. ``/admin/``
routes call ``authenticate_admin``: an operator (the configured admin key, or an API key with
the ``operator`` feature) or a tenant admin (the ``admin`` feature, for its own tenant; the
routes check which tenant with ``Principal.administers``); any other key → 403. Routes that
span tenants call ``authenticate_operator``.
"""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection, Request

from propylon.errors import PermissionDenied
from propylon.http.context import services
from propylon.principal import Principal

_OPERATOR = Principal(
    tenant_id="", tenant_name="operator", features=frozenset({"operator"}), is_operator=True
)


def bearer_token(connection: HTTPConnection) -> str | None:
    """The key of ``Authorization: Bearer <key>`` (HTTP requests and WebSockets alike)."""
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def authenticate(request: Request) -> Principal:
    """The principal of this request; raises ``AuthenticationFailed`` / ``PermissionDenied``.
    The key comes from ``Authorization: Bearer`` or, as Anthropic's clients send it,
    ``x-api-key``."""
    token = bearer_token(request) or request.headers.get("x-api-key") or None
    return await services(request).keys.authenticate(token)


async def authenticate_admin(request: Request) -> Principal:
    """An operator, or a key with the ``admin`` feature (its own tenant); 401 / 403 otherwise."""
    token = bearer_token(request)
    admin_key = services(request).settings.admin_key
    if (
        token is not None
        and admin_key is not None
        and hmac.compare_digest(token.encode(), admin_key.get_secret_value().encode())
    ):
        return _OPERATOR
    principal = await authenticate(request)
    if not (principal.is_operator or "admin" in principal.features):
        raise PermissionDenied("This API key may not use the admin API.", code="admin_required")
    return principal


async def authenticate_operator(request: Request) -> Principal:
    """The admin key or a key with the ``operator`` feature: acts across tenants."""
    principal = await authenticate_admin(request)
    if not principal.is_operator:
        raise operator_required()
    return principal


def operator_required() -> PermissionDenied:
    return PermissionDenied(
        "Only an operator (the admin key or the `operator` feature) may do this; the `admin` "
        "feature administers its own tenant.",
        code="operator_required",
    )
