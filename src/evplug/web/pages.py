"""Server-rendered pages: Jinja2 templates under ``templates/`` sharing ``base.html``.

A page renders with ``render(request, "name.html", {...})``. Every template sees ``request``,
``principal`` (the signed-in account or None), ``csrf_input(request)`` for its forms and
``csrf_token(request)``; ``base.html`` lays out the header, the navigation, the unverified-email
banner and a ``content`` block, plus ``title`` and ``head`` blocks.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from evplug.web.auth import authenticator
from evplug.web.csrf import csrf_input, csrf_token

_WEB = files("evplug.web")
templates = Jinja2Templates(directory=str(_WEB.joinpath("templates")))
templates.env.globals.update(csrf_input=csrf_input, csrf_token=csrf_token)


async def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    principal = await authenticator(request).principal(request)
    values = {"principal": principal, **(context or {})}
    return templates.TemplateResponse(request, template, values, status_code=status_code)


def mount_static(app: FastAPI) -> None:
    """The stylesheet, script and icons under ``/static`` (plain files: no build step)."""
    app.mount("/static", StaticFiles(directory=str(_WEB.joinpath("static"))), name="static")
