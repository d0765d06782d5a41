"""The store, split by area so each part of the system sees only what it uses.

Every method is one transaction. Postings, transitions and session closes are idempotent by
key, by INSERT ... ON CONFLICT DO NOTHING and a close that only an open session takes, so two
writers racing on one key (two processes, two connections) apply it once. A session's close, its
charge and the plug's new state commit together: a crash leaves either all or none of them.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from evplug.store.accounts import Accounts
from evplug.store.effect_batches import EffectBatches
from evplug.store.ledger import Ledger
from evplug.store.payments import Payments
from evplug.store.sessions import Sessions
from evplug.store.sites import Sites
from evplug.store.users import Users


class Repository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.sites = Sites(sessions, engine)
        self.users = Users(sessions)
        self.accounts = Accounts(sessions)
        self.ledger = Ledger(sessions)
        self.sessions = Sessions(sessions)
        self.payments = Payments(sessions)
        self.effects = EffectBatches(sessions, engine)
