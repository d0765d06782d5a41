"""A fuzzing pass over the JSON API (schemathesis, from the OpenAPI document the app serves):
whatever a signed-in client sends, no answer is a 500, and every error is JSON with a sentence.

The app runs on a real HTTP server in the test's event loop; schemathesis's blocking client runs
in a thread beside it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from evplug.bus.broker import free_port
from tests.web.conftest import credit, every_plug_live, make_web_app, sign_in
from tests.web.served import serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = 30
# A stream that never ends, and the two that end the fuzzing client's own session.
SKIPPED = r"/events$|/auth/signout$|/auth/devices/"


def fuzz(base_url: str, cookies: dict[str, str]) -> list[str]:
    """Every operation under /api/v1 with generated inputs; what answered 5xx or not JSON."""
    schema = schemathesis.openapi.from_url(f"{base_url}/api/openapi.json")
    schema = schema.include(path_regex="^/api/v1/").exclude(path_regex=SKIPPED)
    session = requests.Session()
    session.cookies.update(cookies)
    session.headers["x-csrf-token"] = cookies["evplug_csrf"]
    problems: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            response = case.call(session=session, timeout=20)
            what = f"{case.method} {case.formatted_path} -> {response.status_code}"
            # 503 is a refusal that names its fix (here: no payments provider configured).
            if response.status_code >= 500 and response.status_code != 503:
                problems.append(f"{what}: {response.text[:200]}")
            elif response.status_code >= 400 and not _readable(response):
                problems.append(f"{what}: not a JSON detail: {response.text[:200]}")

        call()
    return problems


def _readable(response: Any) -> bool:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return False
    return isinstance(detail, str) and len(detail) > 3


async def test_no_generated_request_gets_a_500(demo_system) -> None:
    system = await demo_system()
    await system.start()
    app = make_web_app(system)
    async with (
        serve(app, free_port()) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as client,
    ):
        await every_plug_live(app, system)
        client.headers["x-csrf-token"] = (await client.get("/")).cookies["evplug_csrf"]
        await credit(system, await sign_in(client, "fuzz@example.com"), 2_000)
        cookies = {cookie.name: cookie.value for cookie in client.cookies.jar}
        problems = await asyncio.to_thread(fuzz, base, cookies)
    assert problems == []
