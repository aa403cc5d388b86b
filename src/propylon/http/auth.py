"""Who is calling: every `/v1` route starts by authenticating its request.

Placeholder until tenants and API keys land (issue 4): every caller is the local default
tenant. The access-control work replaces the body of ``authenticate`` with a key lookup.
"""

from __future__ import annotations

from starlette.requests import Request

from propylon.principal import Principal

_LOCAL = Principal(tenant_id="00000000-0000-0000-0000-000000000000", tenant_name="default")


async def authenticate(request: Request) -> Principal:
    """The principal of this request; raises ``AuthenticationFailed`` / ``PermissionDenied``."""
    return _LOCAL
