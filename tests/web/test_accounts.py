"""Every account flow through the JSON API: sign up and verify, sign in by password and by
emailed link, sign out, forgot and reset, change password and email, signed-in devices; links
that are used or expired, and sessions that are revoked or idle, are refused."""

from __future__ import annotations

import httpx
import pytest

from evplug.clock import FakeClock
from evplug.web.mail import LogMailer
from tests.web.conftest import PASSWORD, client_for, link_to, sign_in, token_of

AUTH = "/api/v1/auth"


@pytest.fixture
def mailer() -> LogMailer:
    return LogMailer(shows_links=True)


@pytest.fixture
def app(make_accounts_app, mailer):
    return make_accounts_app(mailer=mailer)


async def _me(client: httpx.AsyncClient) -> httpx.Response:
    return await client.get(f"{AUTH}/me")


async def test_sign_up_then_the_verification_link_signs_in_once(app, mailer, web_clock) -> None:
    async with client_for(app) as client:
        signed_up = await client.post(
            f"{AUTH}/signup", json={"email": " Ana@Example.com ", "password": PASSWORD}
        )
        assert signed_up.status_code == 202
        assert (await _me(client)).status_code == 401  # not signed in until the link
        [mail] = mailer.sent
        assert mail.to == "ana@example.com" and "/verify?token=" in mail.link
        token = token_of(mail.link)
        verified = await client.post(f"{AUTH}/verify", json={"token": token})
        assert verified.status_code == 200 and verified.json()["email_verified"] is True
        assert (await _me(client)).json()["email"] == "ana@example.com"
        again = await client.post(f"{AUTH}/verify", json={"token": token})
        assert again.status_code == 400 and "expired, used or wrong" in again.json()["detail"]


async def test_an_expired_verification_link_is_refused(app, mailer, web_clock) -> None:
    async with client_for(app) as client:
        await client.post(f"{AUTH}/signup", json={"email": "b@example.com", "password": PASSWORD})
        await web_clock.advance(24 * 3600 + 1)
        late = await client.post(f"{AUTH}/verify", json={"token": token_of(mailer.sent[0].link)})
        assert late.status_code == 400


async def test_bad_sign_up_input_names_the_fix(app) -> None:
    async with client_for(app) as client:
        short = await client.post(f"{AUTH}/signup", json={"email": "c@ex.com", "password": "x"})
        assert short.status_code == 422 and "at least 8" in short.json()["detail"]
        bad = await client.post(f"{AUTH}/signup", json={"email": "nope", "password": PASSWORD})
        assert bad.status_code == 422 and "name@example.com" in bad.json()["detail"]


async def test_password_sign_in_sign_out_and_a_signed_out_cookie_is_refused(app) -> None:
    async with client_for(app) as client:
        user_id = await sign_in(client, "d@example.com")
        await client.post(f"{AUTH}/signout")
        wrong = await client.post(
            f"{AUTH}/signin", json={"email": "d@example.com", "password": "nope-nope"}
        )
        assert wrong.status_code == 401 and "wrong email or password" in wrong.json()["detail"]
        right = await client.post(
            f"{AUTH}/signin", json={"email": "D@example.com", "password": PASSWORD}
        )
        assert right.status_code == 200 and right.json()["user_id"] == user_id
        stolen = client.cookies["evplug_session"]
        assert (await client.post(f"{AUTH}/signout")).status_code == 204
        assert (await _me(client)).status_code == 401
    async with client_for(app) as replay:  # the old cookie, kept by someone: signed out too
        replay.cookies.set("evplug_session", stolen)
        assert (await _me(replay)).status_code == 401


async def test_sign_in_by_emailed_link_works_once_and_not_late(app, mailer, web_clock) -> None:
    async with client_for(app) as client:
        user_id = await sign_in(client, "e@example.com")
        await client.post(f"{AUTH}/signout")
        sent = await client.post(
            f"{AUTH}/signin/link", json={"email": "e@example.com", "next": "/money"}
        )
        assert sent.status_code == 202
        link = link_to(mailer, "e@example.com")
        assert "next=%2Fmoney" in link
        used = await client.post(f"{AUTH}/signin/link/confirm", json={"token": token_of(link)})
        assert used.status_code == 200 and used.json()["user_id"] == user_id
        reused = await client.post(f"{AUTH}/signin/link/confirm", json={"token": token_of(link)})
        assert reused.status_code == 400
        await client.post(f"{AUTH}/signin/link", json={"email": "e@example.com"})
        await web_clock.advance(15 * 60 + 1)
        late = token_of(link_to(mailer, "e@example.com"))
        assert (
            await client.post(f"{AUTH}/signin/link/confirm", json={"token": late})
        ).status_code == 400


async def test_a_link_to_an_unverified_address_drops_the_password_set_with_it(app, mailer) -> None:
    # Someone signed up with another person's address; its owner signs in by link.
    async with client_for(app) as squatter:
        await sign_in(squatter, "f@example.com", verified=False)
        async with client_for(app) as owner:
            await owner.post(f"{AUTH}/signin/link", json={"email": "f@example.com"})
            token = token_of(link_to(mailer, "f@example.com"))
            assert (
                await owner.post(f"{AUTH}/signin/link/confirm", json={"token": token})
            ).status_code == 200
        assert (await _me(squatter)).status_code == 401
        again = await squatter.post(
            f"{AUTH}/signin", json={"email": "f@example.com", "password": PASSWORD}
        )
        assert again.status_code == 401


async def test_forgot_and_reset_password_signs_every_other_device_out(app, mailer) -> None:
    async with client_for(app) as laptop, client_for(app) as phone:
        await sign_in(laptop, "g@example.com")
        await phone.post(f"{AUTH}/signin", json={"email": "g@example.com", "password": PASSWORD})
        async with client_for(app) as anon:
            assert (
                await anon.post(f"{AUTH}/password/forgot", json={"email": "g@example.com"})
            ).status_code == 202
            token = token_of(link_to(mailer, "g@example.com"))
            short = await anon.post(
                f"{AUTH}/password/reset", json={"token": token, "password": "short"}
            )
            assert short.status_code == 422
            reset = await anon.post(
                f"{AUTH}/password/reset", json={"token": token, "password": "a new password"}
            )
            assert reset.status_code == 200 and (await _me(anon)).status_code == 200
            reused = await anon.post(
                f"{AUTH}/password/reset", json={"token": token, "password": "another one!"}
            )
            assert reused.status_code == 400
        assert (await _me(laptop)).status_code == 401 and (await _me(phone)).status_code == 401
        old = await laptop.post(
            f"{AUTH}/signin", json={"email": "g@example.com", "password": PASSWORD}
        )
        assert old.status_code == 401
        new = await laptop.post(
            f"{AUTH}/signin", json={"email": "g@example.com", "password": "a new password"}
        )
        assert new.status_code == 200


async def test_change_password_keeps_this_device_and_signs_out_the_others(app) -> None:
    async with client_for(app) as laptop, client_for(app) as phone:
        await sign_in(laptop, "h@example.com")
        await phone.post(f"{AUTH}/signin", json={"email": "h@example.com", "password": PASSWORD})
        wrong = await laptop.post(
            f"{AUTH}/password/change",
            json={"current_password": "not it!", "new_password": "brand new one"},
        )
        assert wrong.status_code == 422 and "current password is wrong" in wrong.json()["detail"]
        changed = await laptop.post(
            f"{AUTH}/password/change",
            json={"current_password": PASSWORD, "new_password": "brand new one"},
        )
        assert changed.status_code == 204
        assert (await _me(laptop)).status_code == 200 and (await _me(phone)).status_code == 401
        await laptop.post(f"{AUTH}/signout")
        assert (
            await laptop.post(
                f"{AUTH}/signin", json={"email": "h@example.com", "password": "brand new one"}
            )
        ).status_code == 200


async def test_change_email_happens_when_the_new_address_confirms(app, mailer) -> None:
    async with client_for(app) as client:
        await sign_in(client, "i@example.com")
        await sign_in(client_for(app), "taken@example.com")
        asked = await client.post(
            f"{AUTH}/email/change", json={"new_email": "i2@example.com", "password": PASSWORD}
        )
        assert asked.status_code == 202
        assert (await _me(client)).json()["email"] == "i@example.com"  # not yet
        token = token_of(link_to(mailer, "i2@example.com"))
        assert (
            await client.post(f"{AUTH}/email/confirm", json={"token": token})
        ).status_code == 200
        assert (await _me(client)).json()["email"] == "i2@example.com"
        assert (
            await client.post(f"{AUTH}/email/confirm", json={"token": token})
        ).status_code == 400
        wrong = await client.post(
            f"{AUTH}/email/change", json={"new_email": "x@example.com", "password": "guess me"}
        )
        assert wrong.status_code == 422
        await client.post(
            f"{AUTH}/email/change", json={"new_email": "taken@example.com", "password": PASSWORD}
        )
        clash = await client.post(
            f"{AUTH}/email/confirm", json={"token": token_of(link_to(mailer, "taken@example.com"))}
        )
        assert clash.status_code == 409 and "choose another address" in clash.json()["detail"]


async def test_signed_in_devices_are_listed_and_a_revoked_one_is_refused(app) -> None:
    async with client_for(app) as laptop, client_for(app) as phone:
        await sign_in(laptop, "j@example.com")
        await phone.post(
            f"{AUTH}/signin",
            json={"email": "j@example.com", "password": PASSWORD},
            headers={"user-agent": "Phone Browser"},
        )
        await laptop.post(f"{AUTH}/signin", json={"email": "j@example.com", "password": PASSWORD})
        devices = (await laptop.get(f"{AUTH}/devices")).json()
        assert len(devices) == 2 and sum(d["this_device"] for d in devices) == 1
        phone_id = next(d["id"] for d in devices if d["user_agent"] == "Phone Browser")
        assert (await laptop.delete(f"{AUTH}/devices/{phone_id}")).status_code == 204
        assert (await _me(phone)).status_code == 401 and (await _me(laptop)).status_code == 200
        assert (await laptop.delete(f"{AUTH}/devices/{phone_id}")).status_code == 404
        other = await sign_in(client_for(app), "k@example.com")
        assert other  # another account's device cannot be revoked from here
        assert len((await laptop.get(f"{AUTH}/devices")).json()) == 1


async def test_an_idle_session_expires(app, web_clock: FakeClock) -> None:
    async with client_for(app) as client:
        await sign_in(client, "l@example.com")
        await web_clock.advance(29 * 24 * 3600)
        assert (await _me(client)).status_code == 200  # seen: the idle time starts again
        await web_clock.advance(29 * 24 * 3600)
        assert (await _me(client)).status_code == 200
        await web_clock.advance(30 * 24 * 3600 + 61)
        assert (await _me(client)).status_code == 401
