"""Sign in with an OpenID Connect issuer, against a real provider (npm oidc-provider) started
on loopback: the identity's verified email signs in to (or makes) the account with that email."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from evplug.web.oidc import CALLBACK_PATH, OidcConfig
from tests.web.conftest import PUBLIC_URL, client_for, sign_in
from tests.web.oidc_provider import Provider, log_in_at_provider, oidc_provider

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with oidc_provider(PUBLIC_URL + CALLBACK_PATH) as running:
        yield running


def _config(provider: Provider, secret: str | None = None) -> OidcConfig:
    return OidcConfig(
        provider.issuer, provider.client_id, secret or provider.client_secret, name="Test ID"
    )


async def _oidc_sign_in(client, login: str, next_path: str = "/account"):
    started = await client.get(f"/signin/oidc?next={next_path}")
    assert started.status_code == 303, started.text
    back = await log_in_at_provider(started.headers["location"], login, PUBLIC_URL)
    parts = urlsplit(back)
    return await client.get(f"{parts.path}?{parts.query}")


async def test_verified_identity_links_to_the_account_with_that_email(
    make_accounts_app, provider
) -> None:
    app = make_accounts_app(oidc=_config(provider))
    async with client_for(app) as first:
        user_id = await sign_in(first, "linked@example.com")
    async with client_for(app) as client:
        page = await client.get("/signin")
        assert "Sign in with Test ID" in page.text
        finished = await _oidc_sign_in(client, "linked@example.com")
        assert finished.status_code == 303 and finished.headers["location"] == "/account"
        me = (await client.get("/api/v1/auth/me")).json()
        assert me["user_id"] == user_id and me["email_verified"] is True


async def test_a_new_verified_identity_gets_an_account(make_accounts_app, provider) -> None:
    signed_up: list[tuple[str, str]] = []

    async def on_sign_up(user_id: str, email: str) -> None:
        signed_up.append((user_id, email))

    app = make_accounts_app(oidc=_config(provider), on_sign_up=on_sign_up)
    async with client_for(app) as client:
        finished = await _oidc_sign_in(client, "new@example.com", "/")
        assert finished.status_code == 303
        me = (await client.get("/api/v1/auth/me")).json()
        assert me["email"] == "new@example.com" and me["role"] == "driver"
        assert signed_up == [(me["user_id"], "new@example.com")]  # its payments customer
        await client.post("/signout")
        await _oidc_sign_in(client, "new@example.com", "/")
        assert len(signed_up) == 1  # an account is new once


async def test_an_unverified_identity_and_a_replayed_callback_are_refused(
    make_accounts_app, provider
) -> None:
    async with client_for(make_accounts_app(oidc=_config(provider))) as client:
        refused = await _oidc_sign_in(client, "unverified@example.com")
        assert refused.status_code == 400 and "no verified email" in refused.text
        assert (await client.get("/api/v1/auth/me")).status_code == 401

        started = await client.get("/signin/oidc")
        back = urlsplit(
            await log_in_at_provider(started.headers["location"], "x@e.com", PUBLIC_URL)
        )
        assert (await client.get(f"{back.path}?{back.query}")).status_code == 303
        replayed = await client.get(f"{back.path}?{back.query}")
        assert replayed.status_code == 400 and "start it again" in replayed.text


async def test_a_wrong_client_secret_fails_cleanly(make_accounts_app, provider) -> None:
    async with client_for(make_accounts_app(oidc=_config(provider, "wrong"))) as client:
        refused = await _oidc_sign_in(client, "z@example.com")
        assert refused.status_code == 400 and "did not confirm" in refused.text


async def test_signing_in_with_oidc_is_off_unless_configured(accounts_client) -> None:
    page = await accounts_client.get("/signin")
    assert "Sign in with" not in page.text
    assert (await accounts_client.get("/signin/oidc")).status_code == 404
