"""The demo's web app: a page listing the plugs with live state and power, and a JSON API.

The full driver app (QR scan, history, top-ups) builds on these routes.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict

from evplug import metrics
from evplug.core.plug import InvalidTransition, Prompt
from evplug.mothership.actions import ActionRefused
from evplug.mothership.registry import UnknownPlug
from evplug.mothership.runtime import Mothership
from evplug.store.repository import UnknownUser
from evplug.web.limits import BodyLimit

_PAGE = files("evplug.web").joinpath("templates/plugs.html").read_text(encoding="utf-8")


class PromptChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: Prompt


def create_app(mothership: Mothership, driver_id: str) -> FastAPI:
    app = FastAPI(title="evplug", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.add_middleware(BodyLimit)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    async def plugs_page() -> str:
        return _PAGE

    @app.get("/plugs/{plug_id}", response_class=HTMLResponse)
    async def plug_page(plug_id: str) -> str:
        # Where a socket's QR code points: the same page, showing just that plug.
        if plug_id not in mothership.plugs:
            raise HTTPException(404, f"no plug {plug_id!r}: check the code on the socket")
        return _PAGE

    @app.get("/api/plugs")
    async def list_plugs() -> list[dict[str, Any]]:
        return [mothership.status(plug_id) for plug_id in sorted(mothership.plugs)]

    @app.get("/api/plugs/{plug_id}")
    async def get_plug(plug_id: str) -> dict[str, Any]:
        try:
            return mothership.status(plug_id)
        except UnknownPlug as exc:
            raise HTTPException(404, str(exc)) from None

    @app.post("/api/plugs/{plug_id}/prompts")
    async def choose(plug_id: str, choice: PromptChoice) -> dict[str, Any]:
        try:
            await mothership.choose(plug_id, choice.prompt, driver_id)
        except UnknownPlug as exc:
            raise HTTPException(404, str(exc)) from None
        except (InvalidTransition, ActionRefused) as exc:
            raise HTTPException(409, str(exc)) from None
        return mothership.status(plug_id)

    @app.get("/api/me")
    async def me() -> dict[str, Any]:
        try:
            user = await mothership.repo.get_user(driver_id)
        except UnknownUser:
            raise HTTPException(404, "no such driver") from None
        sessions = await mothership.repo.sessions_of_user(driver_id, limit=10)
        return {
            "user_id": user.id,
            "name": user.name,
            "balance_cents": user.balance_cents,
            "sessions": [
                {
                    "session_id": s.id,
                    "plug_id": s.plug_id,
                    "kwh": round(s.energy_wh / 1000, 3),
                    "cents": s.cost_cents,
                    "ended_ms": s.ended_ms,
                    "reason": s.end_reason,
                }
                for s in sessions
            ],
        }

    return app
