"""``/``: the web console's page; its scripts and styles are served from ``/console``."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

__all__ = ["CONSOLE_DIR", "console"]

# The web console: static files shipped in the package, nothing loaded from elsewhere.
CONSOLE_DIR = Path(__file__).parent.parent / "console"


async def console(request: Request) -> Response:
    return FileResponse(CONSOLE_DIR / "index.html")
