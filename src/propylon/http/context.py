"""Access to the running services from a request."""

from __future__ import annotations

from starlette.requests import Request

from propylon.services import Services


def services(request: Request) -> Services:
    result: Services = request.app.state.services
    return result
