"""GET /: the dashboard page (templates/ and static/ belong to the page's authors)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

import engine
from engine.digits import IMAGE_SIDE

router = APIRouter()


def asset_dir(name: str) -> Path:
    """`templates` or `static`: inside the package in an installed wheel (pyproject force-include),
    at the repository root in a source checkout."""
    packaged = Path(__file__).resolve().parent.parent / name
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent.parent / name


templates = Jinja2Templates(directory=str(asset_dir("templates")))


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index(request: Request):
    return templates.TemplateResponse(request, "index.html",
                                      {"version": engine.__version__, "image_side": IMAGE_SIDE})
