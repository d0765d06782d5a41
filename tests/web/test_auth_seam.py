"""The seam every route uses: who is asking (sessions behind a cookie), 401 for the API and a
trip through /signin for pages, roles, and CSRF refusal of forged cross-site requests."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Depends, FastAPI

from evplug.web.auth import CurrentUserId, Principal, Role, require_role
from tests.web.conftest import client_for

OperatorOnly = Annotated[Principal, Depends(require_role(Role.OPERATOR))]


def _with_probe_routes(app: FastAPI) -> FastAPI:
    @app.get("/api/v1/probe")
    async def probe(user_id: CurrentUserId) -> dict[str, str]:
        return {"user_id": user_id}

    @app.get("/probe-page")
    async def probe_page(user_id: CurrentUserId) -> dict[str, str]:
        return {"user_id": user_id}

    @app.get("/api/v1/operator-probe")
    async def operator_probe(who: OperatorOnly) -> dict[str, str]:
        return {"role": who.role}

    return app


async def test_api_without_session_gets_401_and_page_goes_to_sign_in(make_accounts_app) -> None:
    async with client_for(_with_probe_routes(make_accounts_app())) as client:
        api = await client.get("/api/v1/probe")
        assert api.status_code == 401 and "sign in" in api.json()["detail"]
        page = await client.get("/probe-page?x=1")
        assert page.status_code == 303
        assert page.headers["location"] == "/signin?next=/probe-page%3Fx%3D1"


async def test_signed_in_user_is_known_and_roles_are_enforced(
    make_accounts_app, signed_in, accounts_repo
) -> None:
    async with client_for(_with_probe_routes(make_accounts_app())) as client:
        user_id = await signed_in(client, "ana@example.com")
        assert (await client.get("/api/v1/probe")).json() == {"user_id": user_id}
        refused = await client.get("/api/v1/operator-probe")
        assert refused.status_code == 403 and "operator" in refused.json()["detail"]
        await accounts_repo.accounts.set_role(user_id, Role.OPERATOR)
        assert (await client.get("/api/v1/operator-probe")).json() == {"role": "operator"}


async def test_session_cookie_is_httponly_lax_and_secure_over_https(make_accounts_app) -> None:
    app = make_accounts_app()
    async with client_for(app, base_url="https://evplug.test") as client:
        await client.post(
            "/api/v1/auth/signup", json={"email": "b@example.com", "password": "long enough"}
        )
        signed = await client.post(
            "/api/v1/auth/signin", json={"email": "b@example.com", "password": "long enough"}
        )
        cookie = next(
            v for v in signed.headers.get_list("set-cookie") if v.startswith("evplug_session=")
        )
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie


async def test_forged_cross_site_posts_are_refused(make_accounts_app, signed_in) -> None:
    app = make_accounts_app()
    async with client_for(app) as client:
        await signed_in(client, "c@example.com")
        cookies = dict(client.cookies)
    async with client_for(app, csrf=False) as forger:
        forger.cookies.update(cookies)  # the browser sends our cookies along...
        token = cookies["evplug_csrf"]
        attempts = [
            # ...but another site can neither read the token nor pass as this origin (each
            # check on its own: even with the right token, the browser says who sent it).
            {"headers": {"origin": "https://evil.example", "x-csrf-token": token}},
            {"headers": {"origin": "null", "x-csrf-token": token}},
            {"headers": {"sec-fetch-site": "cross-site", "x-csrf-token": token}},
            {"headers": {}},
            {"headers": {"x-csrf-token": "x" * 43}},
        ]
        for attempt in attempts:
            forged = await forger.post(
                "/api/v1/auth/password/change",
                json={"current_password": "correct horse battery", "new_password": "hijacked!!"},
                **attempt,
            )
            assert forged.status_code == 403, (attempt, forged.text)
            assert "cross-site request forgery" in forged.json()["detail"]
        form = await forger.post(
            "/signout", data={"csrf_token": "y" * 43}, headers={"origin": "http://evplug.test"}
        )
        assert form.status_code == 403
        same_site_form = await forger.post(
            "/signout",
            data={"csrf_token": cookies["evplug_csrf"]},
            headers={"origin": "http://evplug.test"},
        )
        assert same_site_form.status_code == 303


async def test_first_response_sets_the_csrf_cookie_and_pages_carry_the_token(
    accounts_client: httpx.AsyncClient,
) -> None:
    page = await accounts_client.get("/signin")
    token = accounts_client.cookies["evplug_csrf"]
    assert f'<meta name="csrf-token" content="{token}">' in page.text
    assert f'name="csrf_token" value="{token}"' in page.text
    assert "Sign in" in page.text and "Sign up" in page.text
