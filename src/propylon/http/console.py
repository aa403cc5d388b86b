"""The web console: `/` serves the page, `/console/*` its static assets (shipped in the
package, so nothing is built at install time)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)

STATIC_DIR = str(resources.files("propylon.console").joinpath("static"))


@router.api_route("/", methods=["GET", "HEAD"])
async def console_page() -> Response:
    """The console's single page."""
    return FileResponse(f"{STATIC_DIR}/index.html", media_type="text/html")


@router.get("/favicon.ico")
async def favicon() -> Response:
    """The console's icon, where browsers look for it unasked."""
    return FileResponse(f"{STATIC_DIR}/favicon.svg", media_type="image/svg+xml")


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)
