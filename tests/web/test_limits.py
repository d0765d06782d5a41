"""Request bodies over the cap are refused with 413 before any route sees them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI

from evplug.core.plug import State
from evplug.web.limits import DEFAULT_MAX_BODY_BYTES, BodyLimit
from tests.conftest import wait_for
from tests.web.conftest import client_for, web_client

LIMIT = 1024
JSON = {"content-type": "application/json"}


class Echo:
    """A FastAPI app behind the limit that records what its route and the app itself saw."""

    def __init__(self) -> None:
        self.app_calls = 0
        self.route_calls: list[dict[str, Any]] = []
        app = FastAPI()

        @app.post("/echo")
        async def echo(doc: dict[str, Any]) -> dict[str, int]:
            self.route_calls.append(doc)
            return {"keys": len(doc)}

        self.fastapi = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.app_calls += 1
        await self.fastapi(scope, receive, send)


def document(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes."""
    body = json.dumps({"pad": ""}).encode()
    return json.dumps({"pad": "x" * (size - len(body))}).encode()


async def test_a_body_announced_too_large_is_refused_before_the_app_runs() -> None:
    echo = Echo()
    async with client_for(BodyLimit(echo, max_bytes=LIMIT)) as client:
        refused = await client.post("/echo", content=document(LIMIT + 1), headers=JSON)
    assert refused.status_code == 413
    assert f"larger than {LIMIT} bytes" in refused.json()["detail"]
    assert echo.app_calls == 0 and echo.route_calls == []


async def test_a_chunked_body_is_cut_off_at_the_cap_and_never_reaches_the_route() -> None:
    echo = Echo()
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        yield b'{"pad": "'
        for _ in range(100_000):  # 100 MB if it were all read
            sent.append(1)
            yield b"x" * 1000

    async with client_for(BodyLimit(echo, max_bytes=LIMIT)) as client:
        refused = await client.post("/echo", content=endless(), headers=JSON)
    assert refused.status_code == 413 and "detail" in refused.json()
    assert echo.route_calls == []
    assert len(sent) <= LIMIT // 1000 + 1  # read no further than the cap


async def test_bodies_up_to_the_cap_go_through_either_way() -> None:
    echo = Echo()

    async def chunks() -> AsyncIterator[bytes]:
        body = document(LIMIT)
        for start in range(0, LIMIT, 100):
            yield body[start : start + 100]

    async with client_for(BodyLimit(echo, max_bytes=LIMIT)) as client:
        whole = await client.post("/echo", content=document(LIMIT), headers=JSON)
        streamed = await client.post("/echo", content=chunks(), headers=JSON)
        empty = await client.get("/echo")
    assert (whole.status_code, streamed.status_code) == (200, 200)
    assert empty.status_code == 405  # not a body matter: the app answers as usual
    assert len(echo.route_calls) == 2


def test_a_negative_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        BodyLimit(Echo(), max_bytes=-1)


@pytest.mark.integration
async def test_the_web_app_refuses_big_bodies_and_unknown_fields(demo_system) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    plug = system.mothership.plug(plug_id)
    await wait_for(lambda: plug.state is State.ACCOUNT_NULL)
    url = f"/api/v1/plugs/{plug_id}/prompts"
    enable = {"prompt": "Enable Socket"}

    async def padded() -> AsyncIterator[bytes]:
        yield json.dumps(enable)[:-1].encode() + b', "pad": "'
        for _ in range(DEFAULT_MAX_BODY_BYTES // 1000 + 10):
            yield b"x" * 1000
        yield b'"}'

    async with web_client(system) as client:
        big = await client.post(url, json={**enable, "pad": "x" * DEFAULT_MAX_BODY_BYTES})
        chunked = await client.post(url, content=padded(), headers=JSON)
        unknown = await client.post(url, json={**enable, "user_id": "someone-else"})
        assert (big.status_code, chunked.status_code, unknown.status_code) == (413, 413, 422)
        assert plug.state is State.ACCOUNT_NULL  # none of them reached the route
        assert "user_id" in unknown.text
        assert (await client.post(url, json=enable)).status_code == 200
    assert plug.state is not State.ACCOUNT_NULL
