"""Accounts, signed-in devices and one-time tokens.

Secrets never reach this module in the clear: callers pass the SHA-256 of a session cookie or
an emailed link's token, so a copy of the database signs nobody in.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from evplug.store.models import AuthSession, OneTimeToken, User
from evplug.store.records import AccountRecord, DeviceRecord, TokenRecord
from evplug.store.sql import UnknownUser


class EmailTaken(ValueError):
    """Another account already has this email address."""


class Accounts:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    # -- accounts ---------------------------------------------------------------------------

    async def create(
        self,
        user_id: str,
        email: str,
        name: str,
        password_hash: str | None,
        now_ms: int,
        *,
        role: str = "driver",
        email_verified: bool = False,
    ) -> AccountRecord:
        """A new account with a zero balance; ``EmailTaken`` when the address is in use."""
        try:
            async with self._sessions.begin() as db:
                if await _by_email(db, email) is not None:
                    raise EmailTaken(email)
                row = User(
                    id=user_id,
                    name=name,
                    email=email,
                    balance_cents=0,
                    password_hash=password_hash,
                    email_verified=email_verified,
                    role=role,
                    created_ms=now_ms,
                )
                db.add(row)
                await db.flush()
                return account_record(row)
        except IntegrityError:  # the same address, a moment ago, by another request
            raise EmailTaken(email) from None

    async def by_email(self, email: str) -> AccountRecord | None:
        async with self._sessions() as db:
            row = await _by_email(db, email)
            return None if row is None else account_record(row)

    async def get(self, user_id: str) -> AccountRecord:
        async with self._sessions() as db:
            row = await db.get(User, user_id)
            if row is None:
                raise UnknownUser(user_id)
            return account_record(row)

    async def set_password(self, user_id: str, password_hash: str) -> None:
        await self._update(user_id, password_hash=password_hash)

    async def mark_verified(self, user_id: str) -> None:
        await self._update(user_id, email_verified=True)

    async def claim(self, user_id: str) -> None:
        """The address is proven by a link or an OIDC issuer, but nobody had verified it: whoever
        signed up with it may not be its owner, so their password and sessions go."""
        async with self._sessions.begin() as db:
            await _set(db, user_id, email_verified=True, password_hash=None)
            await db.execute(
                update(AuthSession).where(AuthSession.user_id == user_id).values(revoked=True)
            )

    async def set_role(self, user_id: str, role: str) -> None:
        await self._update(user_id, role=role)

    async def set_email(self, user_id: str, email: str) -> None:
        """The new address, verified (its owner followed the link sent to it)."""
        try:
            async with self._sessions.begin() as db:
                owner = await _by_email(db, email)
                if owner is not None and owner.id != user_id:
                    raise EmailTaken(email)
                await _set(db, user_id, email=email, email_verified=True)
        except IntegrityError:
            raise EmailTaken(email) from None

    async def set_credentials(
        self, user_id: str, *, email: str, password_hash: str | None, name: str
    ) -> None:
        """For seeding: the account's address, password and name as given."""
        async with self._sessions.begin() as db:
            await _set(
                db,
                user_id,
                email=email,
                password_hash=password_hash,
                name=name,
                email_verified=True,
            )

    async def _update(self, user_id: str, **values: object) -> None:
        async with self._sessions.begin() as db:
            await _set(db, user_id, **values)

    # -- signed-in devices ------------------------------------------------------------------

    async def open_session(
        self, session_id: str, token_hash: str, user_id: str, user_agent: str, now_ms: int
    ) -> None:
        async with self._sessions.begin() as db:
            db.add(
                AuthSession(
                    id=session_id,
                    token_hash=token_hash,
                    user_id=user_id,
                    created_ms=now_ms,
                    last_seen_ms=now_ms,
                    user_agent=user_agent[:300],
                    revoked=False,
                )
            )

    async def live_session(
        self, token_hash: str, now_ms: int, idle_ms: int, touch_every_ms: int
    ) -> tuple[DeviceRecord, AccountRecord] | None:
        """The session and its account; None when unknown, revoked or idle past ``idle_ms``.

        ``last_seen`` is written at most every ``touch_every_ms``: not one write per request.
        """
        async with self._sessions.begin() as db:
            found = (
                await db.execute(
                    select(AuthSession, User)
                    .join(User, User.id == AuthSession.user_id)
                    .where(AuthSession.token_hash == token_hash)
                )
            ).first()
            if found is None:
                return None
            session, user = found
            if session.revoked or now_ms - session.last_seen_ms > idle_ms:
                return None
            if now_ms - session.last_seen_ms >= touch_every_ms:
                session.last_seen_ms = now_ms
            return device_record(session), account_record(user)

    async def devices(self, user_id: str) -> list[DeviceRecord]:
        """The user's sessions that are not revoked, most recently seen first."""
        async with self._sessions() as db:
            rows = await db.scalars(
                select(AuthSession)
                .where(AuthSession.user_id == user_id, AuthSession.revoked.is_(False))
                .order_by(AuthSession.last_seen_ms.desc(), AuthSession.id)
            )
            return [device_record(row) for row in rows]

    async def revoke(self, user_id: str, session_id: str) -> bool:
        """Sign one of the user's devices out; False when it is not theirs or already out."""
        async with self._sessions.begin() as db:
            done = await db.execute(
                update(AuthSession)
                .where(
                    AuthSession.id == session_id,
                    AuthSession.user_id == user_id,
                    AuthSession.revoked.is_(False),
                )
                .values(revoked=True)
            )
            return bool(done.rowcount)

    async def revoke_all(self, user_id: str, keep: str | None = None) -> int:
        """Sign every device of the user out but ``keep``; how many were signed out."""
        async with self._sessions.begin() as db:
            done = await db.execute(
                update(AuthSession)
                .where(
                    AuthSession.user_id == user_id,
                    AuthSession.revoked.is_(False),
                    AuthSession.id != (keep or ""),
                )
                .values(revoked=True)
            )
            return int(done.rowcount)

    # -- one-time tokens --------------------------------------------------------------------

    async def issue_token(
        self,
        token_hash: str,
        purpose: str,
        user_id: str | None,
        now_ms: int,
        expires_ms: int,
        payload: str = "",
    ) -> None:
        async with self._sessions.begin() as db:
            db.add(
                OneTimeToken(
                    token_hash=token_hash,
                    purpose=purpose,
                    user_id=user_id,
                    payload=payload,
                    created_ms=now_ms,
                    expires_ms=expires_ms,
                    used_ms=None,
                )
            )

    async def take_token(self, token_hash: str, purpose: str, now_ms: int) -> TokenRecord | None:
        """Use the token once: None when unknown, for another purpose, expired or used."""
        async with self._sessions.begin() as db:
            taken = await db.execute(
                update(OneTimeToken)
                .where(
                    OneTimeToken.token_hash == token_hash,
                    OneTimeToken.purpose == purpose,
                    OneTimeToken.used_ms.is_(None),
                    OneTimeToken.expires_ms > now_ms,
                )
                .values(used_ms=now_ms)
                .returning(OneTimeToken.user_id, OneTimeToken.payload, OneTimeToken.expires_ms)
            )
            row = taken.first()
            if row is None:
                return None
            return TokenRecord(purpose, row.user_id, row.payload, row.expires_ms)


async def _by_email(db: AsyncSession, email: str) -> User | None:
    return await db.scalar(select(User).where(func.lower(User.email) == email.lower()))


async def _set(db: AsyncSession, user_id: str, **values: object) -> None:
    done = await db.execute(update(User).where(User.id == user_id).values(**values))
    if not done.rowcount:
        raise UnknownUser(user_id)


def account_record(row: User) -> AccountRecord:
    return AccountRecord(
        row.id,
        row.name,
        row.email,
        row.role,
        row.email_verified,
        row.password_hash,
        row.created_ms,
    )


def device_record(row: AuthSession) -> DeviceRecord:
    return DeviceRecord(row.id, row.user_id, row.created_ms, row.last_seen_ms, row.user_agent)
