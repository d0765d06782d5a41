"""The web app: pages and a JSON API for drivers, talking to the mothership only over the bus.

Plug statuses come from the live view (the bus's plug-status store); a driver's choice is a
request on the bus that the mothership answers; balances and history are read from the store.
The full driver app (accounts, QR scan, top-ups) builds on these routes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict
from sse_starlette.sse import EventSourceResponse

from evplug import metrics
from evplug.bus.base import Bus, NoResponders, RequestTimeout
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack, unpack
from evplug.core.plug import Prompt
from evplug.store.repository import Repository
from evplug.store.sql import UnknownUser
from evplug.web.limits import BodyLimit
from evplug.web.live import LiveView
from evplug.web.words import queue_text

_PAGE = files("evplug.web").joinpath("templates/plugs.html").read_text(encoding="utf-8")

Code = pb.DriverReplyCode
_HTTP_STATUS = {
    Code.DRIVER_REPLY_CODE_UNKNOWN_PLUG: 404,
    Code.DRIVER_REPLY_CODE_REFUSED: 409,
    Code.DRIVER_REPLY_CODE_BAD_REQUEST: 422,
}


class PromptChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: Prompt


def plug_json(status: pb.PlugStatus) -> dict[str, Any]:
    in_session = bool(status.session_id)
    return {
        "plug_id": status.plug_id,
        "site_id": status.site_id,
        "fuze_id": status.fuze_id,
        "state": status.state,
        "actual": pb.ActualState.Name(status.actual_state).removeprefix("ACTUAL_STATE_"),
        "prompts": list(status.prompts),
        "power_w": round(status.active_power_w, 1),
        "session_id": status.session_id,
        "session_kwh": round(status.session_energy_wh / 1000, 3) if in_session else 0.0,
        "session_cents": status.session_cost_cents,
        "price_cents_per_kwh": status.price_cents_per_kwh,
        "currency": status.currency,
        "last_end_reason": status.last_end_reason,
        "queue_position": status.queue_position,
        "queue_eta_min": status.queue_eta_min if status.queue_eta_min >= 0 else None,
        "queue_text": queue_text(status.queue_position, status.queue_eta_min),
    }


def create_app(
    bus: Bus, repo: Repository, driver_id: str, request_timeout_s: float = 5.0
) -> FastAPI:
    live: LiveView | None = None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal live
        live = LiveView(await bus.key_value(subjects.PLUG_STATUS_BUCKET))
        await live.start()
        try:
            yield
        finally:
            await live.stop()

    app = FastAPI(
        title="evplug", docs_url="/api/docs", openapi_url="/api/openapi.json", lifespan=lifespan
    )
    app.add_middleware(BodyLimit)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    def view() -> LiveView:
        if live is None:
            raise HTTPException(503, "starting up: try again in a moment")
        return live

    def status_of(plug_id: str) -> pb.PlugStatus:
        status = view().statuses.get(plug_id)
        if status is None:
            raise HTTPException(404, f"no plug {plug_id!r}: check the code on the socket")
        return status

    @app.get("/", response_class=HTMLResponse)
    async def plugs_page() -> str:
        return _PAGE

    @app.get("/plugs/{plug_id}", response_class=HTMLResponse)
    async def plug_page(plug_id: str) -> str:
        # Where a socket's QR code points: the same page, showing just that plug.
        status_of(plug_id)
        return _PAGE

    @app.get("/api/plugs")
    async def list_plugs() -> list[dict[str, Any]]:
        return [plug_json(s) for s in view().sorted()]

    @app.get("/api/plugs/{plug_id}")
    async def get_plug(plug_id: str) -> dict[str, Any]:
        return plug_json(status_of(plug_id))

    @app.get("/api/events")
    async def events() -> EventSourceResponse:
        """Every plug's status as it changes (server-sent events named ``plug``)."""
        current = view()
        queue = current.stream()

        async def changes() -> AsyncIterator[dict[str, str]]:
            try:
                while (status := await queue.get()) is not None:
                    yield {"event": "plug", "data": json.dumps(plug_json(status))}
            finally:
                current.close_stream(queue)

        return EventSourceResponse(changes(), ping=15)

    @app.post("/api/plugs/{plug_id}/prompts")
    async def choose(plug_id: str, choice: PromptChoice) -> dict[str, Any]:
        site_id = status_of(plug_id).site_id
        request = pb.DriverRequest(
            request_id=uuid.uuid4().hex, user_id=driver_id, plug_id=plug_id, prompt=choice.prompt
        )
        try:
            data = await bus.request(
                subjects.for_site(subjects.DRIVER, site_id), pack(request), request_timeout_s
            )
        except (NoResponders, RequestTimeout) as exc:
            raise HTTPException(
                503,
                f"the charging server is not answering ({type(exc).__name__}): try again in a"
                " minute; operators: is `evplug mothership` running and on the same bus?",
            ) from None
        reply = unpack(data, pb.DriverReply)
        if reply.code != Code.DRIVER_REPLY_CODE_OK:
            raise HTTPException(_HTTP_STATUS.get(reply.code, 502), reply.reason)
        return plug_json(reply.status)

    @app.get("/api/me")
    async def me() -> dict[str, Any]:
        try:
            user = await repo.users.get_user(driver_id)
        except UnknownUser:
            raise HTTPException(404, "no such driver") from None
        sessions = await repo.sessions.sessions_of_user(driver_id, limit=10)
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
