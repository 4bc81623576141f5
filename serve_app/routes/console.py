"""The web console (docs/console.md): one page and its static ES modules and CSS, served from
`serve_app/console/` by the API app itself, with no build step.

The page and its assets are public (they hold no data); everything they show comes from the API with the
signed-in person's token. A strict Content-Security-Policy allows only this origin's scripts and styles:
no inline script, no `eval`, no framing.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse

from core.errors import NotFound
from serve_app.routing import public_router

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

# Static files are cheap: they count per client IP in the `health` class (600/min) rather than spending
# the `general` hourly budget unauthenticated API calls share.
router = public_router(tags=["console"], route_class="health")


def _assets() -> dict[str, Path]:
    """The files the console may serve, by name: only what is in its folder (no subfolders, no dotfiles)."""
    return {
        path.name: path
        for path in CONSOLE_DIR.iterdir()
        if path.is_file() and not path.name.startswith(".") and path.suffix in MEDIA_TYPES
    }


def _file(path: Path) -> FileResponse:
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)


@router.get(
    "/console",
    response_class=FileResponse,
    summary="The web console",
    responses={200: {"content": {"text/html": {}}, "description": "The console's page (docs/console.md)"}},
)
def console_page() -> FileResponse:
    """The console: approvals inbox, runs, agents and tasks, live. The page is public; its API calls use the
    signed-in person's token."""
    return _file(CONSOLE_DIR / "index.html")


@router.get("/console/", response_class=FileResponse, include_in_schema=False)
def console_page_slash() -> FileResponse:
    return _file(CONSOLE_DIR / "index.html")


@router.get("/console/assets/{name}", response_class=FileResponse, include_in_schema=False)
def console_asset(name: str) -> FileResponse:
    """One of the console's files, by exact name: anything else (a path, `..`, an unknown name) is a 404."""
    path = _assets().get(name)
    if path is None:
        raise NotFound("No such console asset")
    return _file(path)
