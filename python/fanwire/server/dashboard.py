"""The console served at ``/`` (``static/``): charts, topics with occupancy and presence,
lagging subscribers, and a live feed (the demo ticker as a price board)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC = Path(__file__).parent / "static"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


def dashboard_router() -> APIRouter:
    """``GET /`` (the dashboard) and its assets under ``/static/``."""
    api = APIRouter(include_in_schema=False)

    @api.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @api.get("/static/{name}")
    async def asset(name: str) -> FileResponse:
        path = STATIC / name
        if "/" in name or path.suffix not in _TYPES or not path.is_file():
            raise HTTPException(404)
        return FileResponse(path, media_type=_TYPES[path.suffix])

    return api
