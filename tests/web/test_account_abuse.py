"""What an attacker learns and how fast they may try: an unknown email is answered exactly as a
known one, with the same password-hashing work; sign-in, sign-up and mails are rate-limited."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from evplug import metrics
from evplug.clock import FakeClock
from evplug.web.accounts import AccountLimits, AccountPolicy
from evplug.web.rate_limit import Limit, RateLimiter
from tests.web.conftest import PASSWORD, PUBLIC_URL, RecordingMailer, client_for, sign_in

AUTH = "/api/v1/auth"


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.calls = 0

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.calls += 1
        return super().hash(password, salt=salt)

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.calls += 1
        return super().verify(hash, password)


async def _asked(client: httpx.AsyncClient, hasher: CountingHasher, path: str, body: Any):
    before = hasher.calls
    answer = await client.post(path, json=body)
    return answer.status_code, answer.json(), hasher.calls - before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (f"{AUTH}/signin", {"email": "{email}", "password": "a wrong guess"}),
        (f"{AUTH}/signup", {"email": "{email}", "password": "any password"}),
        (f"{AUTH}/signin/link", {"email": "{email}"}),
        (f"{AUTH}/password/forgot", {"email": "{email}"}),
    ],
)
async def test_unknown_and_known_emails_are_answered_alike(
    make_accounts_app, path: str, body: dict[str, str]
) -> None:
    hasher, mailer = CountingHasher(), RecordingMailer()
    app = make_accounts_app(policy=AccountPolicy(PUBLIC_URL, hasher=hasher), mailer=mailer)
    async with client_for(app) as client:
        await sign_in(client, "known@example.com", verified=False)
        await client.post(f"{AUTH}/signout")

        def filled(email: str) -> dict[str, str]:
            return {k: v.format(email=email) for k, v in body.items()}

        known = await _asked(client, hasher, path, filled("known@example.com"))
        unknown = await _asked(client, hasher, path, filled("unknown@example.com"))
        assert known == unknown  # status, body and the number of argon2 operations
        assert known[2] >= (1 if path.endswith(("signin", "signup")) else 0)


async def test_sign_in_is_rate_limited_per_ip_and_email(make_accounts_app, web_clock) -> None:
    limits = AccountLimits(sign_in=Limit(3, 300.0))
    app = make_accounts_app(
        policy=AccountPolicy(PUBLIC_URL, limits=limits, hasher=CountingHasher())
    )
    refused_before = metrics.AUTH_RATE_LIMITED.labels("sign_in")._value.get()
    async with client_for(app) as client:
        await sign_in(client, "m@example.com")
        for _ in range(3):
            wrong = await client.post(
                f"{AUTH}/signin", json={"email": "m@example.com", "password": "guess"}
            )
            assert wrong.status_code == 401
        limited = await client.post(
            f"{AUTH}/signin", json={"email": "m@example.com", "password": PASSWORD}
        )
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        assert "wait" in limited.json()["detail"]
        other = await client.post(
            f"{AUTH}/signin", json={"email": "n@example.com", "password": "x"}
        )
        assert other.status_code == 401  # another address from this IP still gets its tries
        await web_clock.advance(301)
        right = await client.post(
            f"{AUTH}/signin", json={"email": "m@example.com", "password": PASSWORD}
        )
        assert right.status_code == 200
    assert metrics.AUTH_RATE_LIMITED.labels("sign_in")._value.get() == refused_before + 1


async def test_sign_up_and_mails_are_rate_limited(make_accounts_app) -> None:
    limits = AccountLimits(sign_up=Limit(2, 3600.0), mail=Limit(2, 3600.0))
    app = make_accounts_app(
        policy=AccountPolicy(PUBLIC_URL, limits=limits, hasher=CountingHasher())
    )
    async with client_for(app) as client:
        codes = [
            (
                await client.post(
                    f"{AUTH}/signup", json={"email": "o@example.com", "password": PASSWORD}
                )
            ).status_code
            for _ in range(3)
        ]
        assert codes == [202, 202, 429]
        codes = [
            (
                await client.post(f"{AUTH}/password/forgot", json={"email": "o@example.com"})
            ).status_code
            for _ in range(3)
        ]
        assert codes == [202, 202, 429]


async def test_one_ip_trying_many_addresses_is_limited_too() -> None:
    limiter = RateLimiter(FakeClock())
    per_ip = Limit(10, 60.0)
    assert all(limiter.hit("ip", per_ip) is None for _ in range(10))
    assert limiter.hit("ip", per_ip) == 60


async def test_the_limiter_forgets_old_attempts_and_bounds_its_memory() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock, max_keys=3)
    limit = Limit(1, 10.0)
    assert limiter.hit("a", limit) is None and limiter.hit("a", limit) == 10
    await clock.advance(4)
    assert limiter.hit("a", limit) == 6
    await clock.advance(6)
    assert limiter.hit("a", limit) is None
    for key in "bcdef":
        limiter.hit(key, limit)
    assert len(limiter._hits) <= 3
