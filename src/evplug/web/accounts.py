"""What an account can do, shared by the JSON API and the pages: sign up, verify the email,
sign in by password or by emailed link, reset and change the password, change the email.

No answer tells whether an email has an account: an unknown address gets the same message and
the same work (one argon2 hash or verification, one token written, one mail queued for a known
address, none for an unknown one but sent after the answer) as a known one.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from evplug import metrics
from evplug.clock import Clock
from evplug.store.accounts import Accounts, EmailTaken
from evplug.store.records import AccountRecord
from evplug.web.auth import hash_token
from evplug.web.mail import Mail
from evplug.web.rate_limit import Limit, RateLimiter

log = structlog.get_logger(__name__)

# Told of each new account (user id, email): the assembly makes its payments customer here.
SignUpHook = Callable[[str, str], Awaitable[None]]

MIN_PASSWORD = 8
MAX_PASSWORD = 256  # argon2 takes any length; a megabyte password should not cost us more
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}")


class Purpose:
    VERIFY = "verify"
    SIGN_IN = "signin"
    RESET = "reset"
    EMAIL = "email"
    OIDC = "oidc"


class AccountError(ValueError):
    """Input the person can fix; the message says how."""


class TooManyAttempts(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many attempts: try again in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class AccountLimits:
    """Attempts allowed per window; each is counted per IP and per IP + email address."""

    sign_in: Limit = field(default_factory=lambda: Limit(10, 300.0))
    sign_up: Limit = field(default_factory=lambda: Limit(5, 3600.0))
    mail: Limit = field(default_factory=lambda: Limit(5, 3600.0))


@dataclass(frozen=True, slots=True)
class TokenLifetimes:
    verify_s: float = 24 * 3600
    sign_in_s: float = 15 * 60
    reset_s: float = 3600
    email_s: float = 24 * 3600
    oidc_s: float = 10 * 60


@dataclass(frozen=True, slots=True)
class AccountPolicy:
    public_url: str
    limits: AccountLimits = field(default_factory=AccountLimits)
    lifetimes: TokenLifetimes = field(default_factory=TokenLifetimes)
    hasher: PasswordHasher = field(default_factory=PasswordHasher)


def normal_email(email: str) -> str:
    """The address as stored and compared; AccountError when it is not one."""
    email = email.strip().lower()
    if len(email) > 320 or not _EMAIL.fullmatch(email):
        raise AccountError(f"{email[:80]!r} is not an email address: type it as name@example.com")
    return email


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"choose a password of at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"choose a password of at most {MAX_PASSWORD} characters")
    return password


def safe_next(next_path: str | None) -> str:
    """Where to land after signing in: a path on this site only (no open redirect)."""
    if next_path and next_path.startswith("/") and not next_path.startswith(("//", "/\\")):
        return next_path
    return "/"


class AccountService:
    def __init__(
        self,
        accounts: Accounts,
        clock: Clock,
        limiter: RateLimiter,
        policy: AccountPolicy,
        on_sign_up: SignUpHook | None = None,
    ) -> None:
        self.accounts = accounts
        self.clock = clock
        self.limiter = limiter
        self.policy = policy
        self.on_sign_up = on_sign_up
        self._welcomes: set[asyncio.Task[None]] = set()
        # Verified against when the email has no password, so it takes as long as a real one.
        self._decoy_hash = policy.hasher.hash(secrets.token_urlsafe(16))

    # -- rate limits -------------------------------------------------------------------------

    def limit(self, action: str, limit: Limit, ip: str, email: str = "") -> None:
        """Count one attempt per IP + address and per IP (which may try a few addresses)."""
        keys = [(f"{action}|{ip}", Limit(limit.count * 5, limit.per_s))]
        if email:
            keys.append((f"{action}|{ip}|{email}", limit))
        for key, allowed in keys:
            wait = self.limiter.hit(key, allowed)
            if wait is not None:
                metrics.AUTH_RATE_LIMITED.labels(action).inc()
                raise TooManyAttempts(wait)

    # -- passwords ---------------------------------------------------------------------------

    async def hash_password(self, password: str) -> str:
        return await asyncio.to_thread(self.policy.hasher.hash, check_password(password))

    async def password_matches(self, account: AccountRecord | None, password: str) -> bool:
        stored = account.password_hash if account is not None else None
        try:
            await asyncio.to_thread(
                self.policy.hasher.verify, stored or self._decoy_hash, password[:MAX_PASSWORD]
            )
        except (VerificationError, InvalidHashError):
            return False
        return stored is not None

    # -- tokens and links --------------------------------------------------------------------

    async def _link(
        self,
        purpose: str,
        user_id: str | None,
        path: str,
        lifetime_s: float,
        payload: str = "",
        **query: str,
    ) -> str:
        token = secrets.token_urlsafe(32)
        now = self.clock.now_ms()
        await self.accounts.issue_token(
            hash_token(token), purpose, user_id, now, now + round(lifetime_s * 1000), payload
        )
        return f"{self.policy.public_url}{path}?{urlencode({'token': token, **query})}"

    async def take(self, token: str, purpose: str) -> tuple[str, str] | None:
        """The (user id, payload) of a valid one-time token, used up; None if it is not one."""
        taken = await self.accounts.take_token(hash_token(token), purpose, self.clock.now_ms())
        if taken is None or taken.user_id is None:
            return None
        return taken.user_id, taken.payload

    # -- new accounts ------------------------------------------------------------------------

    async def welcome(self, user_id: str, email: str) -> None:
        """Run the sign-up hook for a new account; a failure never undoes the account: it is
        logged and counted, and the hook's work is redone when next needed (it is idempotent)."""
        if self.on_sign_up is None:
            return
        try:
            await self.on_sign_up(user_id, email)
        except Exception as exc:
            metrics.SIGN_UP_HOOK_FAILED.inc()
            log.warning(
                "accounts.sign_up_hook_failed",
                user_id=user_id,
                error=f"{type(exc).__name__}: {exc}",
                fix="nothing to do: it is retried at the driver's first top-up",
            )

    def _welcome_later(self, user_id: str, email: str) -> None:
        # After the answer: its time must not tell a new address from a known one.
        task = asyncio.create_task(self.welcome(user_id, email))
        self._welcomes.add(task)
        task.add_done_callback(self._welcomes.discard)

    async def welcomed(self) -> None:
        """Wait until every new account's hook has run (at shutdown, and in tests)."""
        while self._welcomes:
            await asyncio.gather(*self._welcomes)

    # -- flows -------------------------------------------------------------------------------

    async def sign_up(self, email: str, password: str, ip: str, name: str = "") -> Mail:
        """A new, unverified account and its verification mail; for an address that has an
        account already, a mail saying so (with a sign-in link) and nothing else."""
        email = normal_email(email)
        self.limit("sign_up", self.policy.limits.sign_up, ip, email)
        password_hash = await self.hash_password(password)
        life = self.policy.lifetimes
        try:
            account = await self.accounts.create(
                uuid.uuid4().hex,
                email,
                name or email.split("@")[0],
                password_hash,
                self.clock.now_ms(),
            )
        except EmailTaken:
            existing = await self.accounts.by_email(email)
            user_id = existing.id if existing is not None else None
            link = await self._link(Purpose.SIGN_IN, user_id, "/signin/link", life.sign_in_s)
            return Mail(
                email,
                "You already have an evplug account",
                "Someone (perhaps you) tried to sign up with this address, which already has an"
                f" account. To sign in, open this link within 15 minutes:\n\n{link}\n\n"
                "If you forgot your password, reset it from the sign-in page.",
                link,
            )
        self._welcome_later(account.id, email)
        link = await self._link(Purpose.VERIFY, account.id, "/verify", life.verify_s)
        return verify_mail(email, link)

    async def resend_verification(self, user_id: str, ip: str) -> Mail | None:
        account = await self.accounts.get(user_id)
        self.limit("mail", self.policy.limits.mail, ip, account.email)
        if account.email_verified:
            return None
        link = await self._link(Purpose.VERIFY, user_id, "/verify", self.policy.lifetimes.verify_s)
        return verify_mail(account.email, link)

    async def verify_email(self, token: str) -> str | None:
        taken = await self.take(token, Purpose.VERIFY)
        if taken is None:
            return None
        await self.accounts.mark_verified(taken[0])
        return taken[0]

    async def sign_in(self, email: str, password: str, ip: str) -> str | None:
        """The account's id when the password is right; None for any wrong pair."""
        email = email.strip().lower()
        self.limit("sign_in", self.policy.limits.sign_in, ip, email)
        account = await self.accounts.by_email(email)
        if not await self.password_matches(account, password):
            return None
        assert account is not None
        return account.id

    async def send_sign_in_link(self, email: str, ip: str, next_path: str = "/") -> Mail | None:
        """A one-time sign-in link for a known address; None (and the same work) otherwise."""
        email = normal_email(email)
        self.limit("mail", self.policy.limits.mail, ip, email)
        account = await self.accounts.by_email(email)
        link = await self._link(
            Purpose.SIGN_IN,
            account.id if account else None,
            "/signin/link",
            self.policy.lifetimes.sign_in_s,
            next=safe_next(next_path),
        )
        if account is None:
            return None
        return Mail(
            email,
            "Your evplug sign-in link",
            f"Open this link within 15 minutes to sign in to evplug:\n\n{link}\n\n"
            "It works once. If you did not ask for it, ignore this mail.",
            link,
        )

    async def sign_in_by_link(self, token: str) -> str | None:
        taken = await self.take(token, Purpose.SIGN_IN)
        if taken is None:
            return None
        # Following a link sent to the address proves it is theirs, and that whoever signed up
        # with it unverified may not have been them.
        if not (await self.accounts.get(taken[0])).email_verified:
            await self.accounts.claim(taken[0])
        return taken[0]

    async def request_reset(self, email: str, ip: str) -> Mail | None:
        email = normal_email(email)
        self.limit("mail", self.policy.limits.mail, ip, email)
        account = await self.accounts.by_email(email)
        link = await self._link(
            Purpose.RESET, account.id if account else None, "/reset", self.policy.lifetimes.reset_s
        )
        if account is None:
            return None
        return Mail(
            email,
            "Reset your evplug password",
            f"Open this link within an hour to choose a new password:\n\n{link}\n\n"
            "If you did not ask for it, ignore this mail: your password stays as it is.",
            link,
        )

    async def reset_password(self, token: str, password: str) -> str | None:
        """The new password set and every device signed out; None for a bad or used link."""
        password_hash = await self.hash_password(password)
        taken = await self.take(token, Purpose.RESET)
        if taken is None:
            return None
        user_id = taken[0]
        await self.accounts.set_password(user_id, password_hash)
        await self.accounts.mark_verified(user_id)
        await self.accounts.revoke_all(user_id)
        return user_id

    async def change_password(
        self, user_id: str, current: str, new: str, keep_session: str
    ) -> None:
        """Other devices are signed out; this one stays. AccountError for a wrong current one."""
        account = await self.accounts.get(user_id)
        if account.password_hash is not None and not await self.password_matches(account, current):
            raise AccountError("the current password is wrong: type it again")
        await self.accounts.set_password(user_id, await self.hash_password(new))
        await self.accounts.revoke_all(user_id, keep=keep_session)

    async def request_email_change(
        self, user_id: str, new_email: str, password: str, ip: str
    ) -> Mail:
        """A confirmation link mailed to the new address; the change happens when it is opened."""
        new_email = normal_email(new_email)
        self.limit("mail", self.policy.limits.mail, ip, new_email)
        account = await self.accounts.get(user_id)
        if account.password_hash is not None and not await self.password_matches(account, password):
            raise AccountError("the password is wrong: type your current password to confirm")
        link = await self._link(
            Purpose.EMAIL,
            user_id,
            "/account/email/confirm",
            self.policy.lifetimes.email_s,
            payload=new_email,
        )
        return Mail(
            new_email,
            "Confirm your new evplug email address",
            f"Open this link within a day to use this address for your evplug account:\n\n{link}",
            link,
        )

    async def confirm_email_change(self, token: str) -> str | None:
        taken = await self.take(token, Purpose.EMAIL)
        if taken is None:
            return None
        user_id, new_email = taken
        try:
            await self.accounts.set_email(user_id, new_email)
        except EmailTaken:
            raise AccountError(
                f"{new_email} has an account of its own now: choose another address"
            ) from None
        return user_id


def verify_mail(email: str, link: str) -> Mail:
    return Mail(
        email,
        "Verify your evplug email address",
        f"Welcome to evplug. Open this link to verify your address and sign in:\n\n{link}",
        link,
    )
