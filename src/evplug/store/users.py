"""Drivers' accounts."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from evplug.store.models import User
from evplug.store.records import UserRecord
from evplug.store.sql import UnknownUser, insert_new


class Users:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def ensure_user(self, user_id: str, name: str, email: str) -> UserRecord:
        async with self._sessions.begin() as db:
            await db.execute(
                insert_new(db, User, "id").values(
                    id=user_id, name=name, email=email, balance_cents=0
                )
            )
            return user_record(await db.get_one(User, user_id))

    async def get_user(self, user_id: str) -> UserRecord:
        async with self._sessions() as db:
            user = await db.get(User, user_id)
            if user is None:
                raise UnknownUser(user_id)
            return user_record(user)


def user_record(row: User) -> UserRecord:
    return UserRecord(row.id, row.name, row.email, row.balance_cents)
