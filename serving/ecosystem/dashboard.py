"""The live dashboard: one static page, shipped in the package, fed by the WebSocket."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parent / "static"
router = APIRouter(tags=["dashboard"])


@router.get("/", response_class=FileResponse, include_in_schema=True)
async def dashboard() -> FileResponse:
    """The live dashboard (HTML)."""
    return FileResponse(STATIC / "dashboard.html", media_type="text/html")
