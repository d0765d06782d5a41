"""The account pages as a browser without scripts uses them: plain forms carrying the CSRF
field, a signed-out visit to a page goes through sign-in and comes back."""

from __future__ import annotations

import re

import httpx

from evplug.web.mail import LogMailer
from tests.web.conftest import PASSWORD, client_for, link_to, sign_in, token_of


def _form_token(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text[:300]
    return found.group(1)


async def _post_form(client: httpx.AsyncClient, page_path: str, action: str, **fields: str):
    """Load the page, then submit its form as a browser does (the token from the form)."""
    page = await client.get(page_path)
    return await client.post(
        action,
        data={"csrf_token": _form_token(page), **fields},
        headers={"x-csrf-token": ""},  # no header: the form field alone must do
    )


async def test_sign_up_verify_and_land_home_through_the_pages(make_accounts_app) -> None:
    mailer = LogMailer(shows_links=True)
    async with client_for(make_accounts_app(mailer=mailer), csrf=False) as browser:
        page = await browser.get("/signup")
        assert page.status_code == 200 and "<h1>Sign up</h1>" in page.text
        sent = await _post_form(
            browser, "/signup", "/signup", email="p@example.com", password=PASSWORD
        )
        assert sent.status_code == 200 and "Check your email" in sent.text
        link = link_to(mailer, "p@example.com")
        assert link in sent.text  # no mail server here: the page shows the link, as the demo does
        confirm = await browser.get(link.removeprefix("http://evplug.test"))
        assert "Verify my email" in confirm.text  # a button, so a mail scanner does not use it
        verified = await browser.post(
            "/verify", data={"csrf_token": _form_token(confirm), "token": token_of(link)}
        )
        assert verified.status_code == 303 and verified.headers["location"] == "/"
        account = await browser.get("/account")
        assert "p@example.com" in account.text and "verified" in account.text


async def test_a_signed_out_visit_signs_in_and_comes_back(make_accounts_app) -> None:
    app = make_accounts_app()
    async with client_for(app) as setup:
        await sign_in(setup, "q@example.com")
    async with client_for(app, csrf=False) as browser:
        away = await browser.get("/account")
        assert away.status_code == 303 and away.headers["location"] == "/signin?next=/account"
        page = await browser.get(away.headers["location"])
        assert 'name="next" value="/account"' in page.text
        wrong = await browser.post(
            "/signin",
            data={
                "csrf_token": _form_token(page),
                "email": "q@example.com",
                "password": "nope!!!!",
                "next": "/account",
            },
        )
        assert wrong.status_code == 401 and "Wrong email or password" in wrong.text
        right = await browser.post(
            "/signin",
            data={
                "csrf_token": _form_token(page),
                "email": "q@example.com",
                "password": PASSWORD,
                "next": "/account",
            },
        )
        assert right.status_code == 303 and right.headers["location"] == "/account"
        account = await browser.get("/account")
        assert "Signed-in devices" in account.text and "(this device)" in account.text
        out = await _post_form(browser, "/account", "/signout")
        assert out.status_code == 303 and (await browser.get("/account")).status_code == 303


async def test_next_never_leaves_the_site(make_accounts_app) -> None:
    app = make_accounts_app()
    async with client_for(app) as setup:
        await sign_in(setup, "r@example.com")
    async with client_for(app, csrf=False) as browser:
        for target in ("//evil.example/x", "https://evil.example", "/\\evil.example"):
            page = await browser.get("/signin", params={"next": target})
            signed = await browser.post(
                "/signin",
                data={
                    "csrf_token": _form_token(page),
                    "email": "r@example.com",
                    "password": PASSWORD,
                    "next": target,
                },
            )
            assert signed.headers["location"] == "/"


async def test_unverified_banner_and_account_forms(make_accounts_app) -> None:
    mailer = LogMailer(shows_links=True)
    async with client_for(make_accounts_app(mailer=mailer), csrf=False) as browser:
        async with client_for(browser._transport.app) as api:  # type: ignore[attr-defined]
            await sign_in(api, "s@example.com", verified=False)
            browser.cookies.update(api.cookies)
        account = await browser.get("/account")
        assert "not verified yet" in account.text
        resent = await _post_form(browser, "/account", "/account/verify")
        assert resent.status_code == 200 and link_to(mailer, "s@example.com") in resent.text
        changed = await _post_form(
            browser,
            "/account",
            "/account/password",
            current_password=PASSWORD,
            new_password="fresh password",
        )
        assert "Password changed" in changed.text
        short = await _post_form(
            browser,
            "/account",
            "/account/password",
            current_password="fresh password",
            new_password="x",
        )
        assert short.status_code == 422 and "at least 8" in short.text
        moved = await _post_form(
            browser,
            "/account",
            "/account/email",
            new_email="s2@example.com",
            password="fresh password",
        )
        assert "s2@example.com" in moved.text
        link = link_to(mailer, "s2@example.com").removeprefix("http://evplug.test")
        confirm = await browser.get(link)
        done = await browser.post(
            "/account/email/confirm",
            data={"csrf_token": _form_token(confirm), "token": token_of(link)},
        )
        assert done.status_code == 303
        assert "s2@example.com" in (await browser.get("/account")).text


async def test_forgot_and_reset_through_the_pages(make_accounts_app) -> None:
    mailer = LogMailer(shows_links=True)
    app = make_accounts_app(mailer=mailer)
    async with client_for(app) as setup:
        await sign_in(setup, "t@example.com")
    async with client_for(app, csrf=False) as browser:
        sent = await _post_form(browser, "/forgot", "/forgot", email="t@example.com")
        assert "Check your email" in sent.text
        link = link_to(mailer, "t@example.com").removeprefix("http://evplug.test")
        page = await browser.get(link)
        assert "Choose a new password" in page.text
        done = await browser.post(
            "/reset",
            data={
                "csrf_token": _form_token(page),
                "token": token_of(link),
                "password": "the new one",
            },
        )
        assert done.status_code == 303 and done.headers["location"] == "/account"
        again = await browser.post(
            "/reset",
            data={
                "csrf_token": _form_token(page),
                "token": token_of(link),
                "password": "the new one",
            },
        )
        assert again.status_code == 400 and "expired, used or wrong" in again.text
