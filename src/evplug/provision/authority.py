"""The broker's trust: operator, accounts and users, kept in the broker's data dir.

```
DATA_DIR/nats/auth/
  operator.nk  system.nk  account.nk   the operator's and the two accounts' seeds (0600)
  operator.jwt                         the operator the server trusts
  sites.json                           each site's user key and state; revoked user keys
  server.conf                          operator mode, the full resolver, accounts preloaded
  resolver/                            the server's own store of account JWTs
  admin.creds mothership.creds web.creds system.creds     the service users (0600)
```

Everything is created the first time a broker starts on the directory, so a developer has
nothing to set up. One account, ``EVPLUG``, holds the streams and every user; the system
account's user pushes account updates (a revocation) to the running server. A site's user seed
is never kept here: it is only in the credentials file handed to the site.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evplug.core.ids import check_site_id
from evplug.provision import permissions
from evplug.provision.permissions import Permissions
from evplug.provision.tokens import (
    CredentialsError,
    Key,
    Kind,
    creds_text,
    encode,
    read_creds,
    write_secret,
)

OPERATOR = "evplug"
ACCOUNT = "EVPLUG"
SYSTEM_ACCOUNT = "SYS"
ADMIN, MOTHERSHIP, WEB, SYSTEM = "admin", "mothership", "web", "system"
SERVICE_USERS = (ADMIN, MOTHERSHIP, WEB)
AUTH_DIR = "auth"

# Unlimited connections and data; JetStream on (storage -1: as much as the server has).
_ACCOUNT_LIMITS: dict[str, Any] = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
}
_JETSTREAM = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


# Hands a credentials file's text over (writes it where the site will get it).
Deliver = Callable[[str], object]


class ProvisionError(RuntimeError):
    """A provisioning step that cannot be done; the message says what to do instead."""


@dataclass(frozen=True, slots=True)
class SiteRecord:
    site_id: str
    name: str
    user: str  # the public key of its current credentials
    created: int  # unix s
    key_issued: int  # unix s, of the current credentials
    revoked: bool = False


def _service_permissions(user: str, public_key: str) -> Permissions:
    if user == MOTHERSHIP:
        return permissions.mothership(public_key)
    if user == WEB:
        return permissions.web(public_key)
    return permissions.everything()


class Authority:
    """The operator's keys and the sites' state in one directory; see the module doc."""

    def __init__(self, broker_dir: Path) -> None:
        self.dir = broker_dir / AUTH_DIR

    # -- files ---------------------------------------------------------------------------------

    def creds_file(self, user: str) -> Path:
        return self.dir / f"{user}.creds"

    @property
    def server_config(self) -> Path:
        return self.dir / "server.conf"

    @property
    def _state_file(self) -> Path:
        return self.dir / "sites.json"

    def _key(self, name: str, kind: Kind) -> Key:
        path = self.dir / f"{name}.nk"
        if path.is_file():
            try:
                return Key.from_seed(path.read_text(encoding="utf-8"))
            except CredentialsError as exc:
                raise ProvisionError(f"{path}: {exc}: restore it from a backup") from None
        key = Key.new(kind)
        write_secret(path, key.seed + "\n")
        return key

    def _state(self) -> dict[str, Any]:
        try:
            return json.loads(self._state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"account_iat": 0, "revoked": {}, "sites": {}}
        except (OSError, ValueError) as exc:
            raise ProvisionError(f"{self._state_file}: cannot read it ({exc})") from None

    def _save(self, state: dict[str, Any]) -> None:
        write_secret(self._state_file, json.dumps(state, indent=2, sort_keys=True) + "\n")

    # -- keys and tokens -----------------------------------------------------------------------

    @property
    def operator(self) -> Key:
        return self._key("operator", "operator")

    @property
    def system_account(self) -> Key:
        return self._key("system", "account")

    @property
    def account(self) -> Key:
        return self._key("account", "account")

    def system_account_jwt(self) -> str:
        system = self.system_account
        return encode(
            self.operator, system.public, SYSTEM_ACCOUNT, "account", 1, {"limits": _ACCOUNT_LIMITS}
        )

    def account_jwt(self, iat: int) -> str:
        """The account as the state has it now: its limits and every revoked user key."""
        nats = {
            "limits": {**_ACCOUNT_LIMITS, **_JETSTREAM},
            "revocations": dict(self._state()["revoked"]),
        }
        return encode(self.operator, self.account.public, ACCOUNT, "account", iat, nats)

    def latest_account_jwt(self) -> str:
        """The account JWT of the latest change (its issue time is what orders the updates)."""
        return self.account_jwt(max(self._state()["account_iat"], 1))

    def _user_jwt(self, user: Key, name: str, granted: Permissions, iat: int) -> str:
        return encode(self.account, user.public, name, "user", iat, granted.claims())

    def ensure(self) -> None:
        """Keys, the service users and the server's config, made where missing; kept otherwise.

        The service users keep their keys; their JWTs are issued again, so permissions changed
        in the code reach them at the next broker start.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        operator, system = self.operator, self.system_account
        operator_jwt = encode(
            operator, operator.public, OPERATOR, "operator", 1, {"system_account": system.public}
        )
        (self.dir / "operator.jwt").write_text(operator_jwt + "\n", encoding="utf-8")
        now = int(time.time())
        for user in SERVICE_USERS:
            key = self._kept_key(user)
            granted = _service_permissions(user, key.public)
            token = self._user_jwt(key, user, granted, now)
            write_secret(self.creds_file(user), creds_text(token, key.seed))
        key = self._kept_key(SYSTEM)
        system_jwt = encode(
            system, key.public, SYSTEM, "user", now, permissions.everything().claims()
        )
        write_secret(self.creds_file(SYSTEM), creds_text(system_jwt, key.seed))
        self._write_server_config()

    def _kept_key(self, user: str) -> Key:
        path = self.creds_file(user)
        if path.is_file():
            try:
                return read_creds(path)[1]
            except CredentialsError:
                pass  # a damaged service file is replaced: nothing but this directory holds it
        return Key.new("user")

    def _write_server_config(self) -> None:
        preload = {
            self.system_account.public: self.system_account_jwt(),
            self.account.public: self.latest_account_jwt(),
        }
        lines = [
            f"operator: {json.dumps(str((self.dir / 'operator.jwt').resolve()))}",
            f"system_account: {self.system_account.public}",
            "resolver: {",
            "  type: full",
            f"  dir: {json.dumps(str((self.dir / 'resolver').resolve()))}",
            "  allow_delete: false",
            '  interval: "2m"',
            "}",
            "resolver_preload: {",
            *(f"  {account}: {token}" for account, token in preload.items()),
            "}",
        ]
        self.server_config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    # -- sites ---------------------------------------------------------------------------------

    def sites(self) -> Iterator[SiteRecord]:
        for values in sorted(self._state()["sites"].values(), key=lambda s: s["site_id"]):
            yield SiteRecord(**values)

    def site(self, site_id: str) -> SiteRecord:
        values = self._state()["sites"].get(site_id)
        if values is None:
            raise ProvisionError(
                f"no site {site_id!r} in {self._state_file}: `evplug site list` shows the sites"
            )
        return SiteRecord(**values)

    def issue(self, site_id: str, name: str, deliver: Deliver) -> SiteRecord:
        """A new site; its credentials file's text goes to ``deliver`` before it is recorded."""
        check_site_id(site_id)
        if site_id in self._state()["sites"]:
            raise ProvisionError(
                f"site {site_id!r} exists: `evplug site rotate-key {site_id}` gives it new"
                " credentials"
            )
        now = int(time.time())
        return self._credentials(SiteRecord(site_id, name, "", now, now), deliver)

    def rotate(self, site_id: str, deliver: Deliver) -> SiteRecord:
        """New credentials for a site, handed to ``deliver``; then its old key is revoked (the
        account must be pushed). Nothing changes if ``deliver`` fails."""
        old = self.site(site_id)
        if old.revoked:
            raise ProvisionError(f"site {site_id!r} is revoked: create a new site instead")
        now = int(time.time())
        record = self._credentials(SiteRecord(site_id, old.name, "", old.created, now), deliver)
        self._revoke_key(old.user, now)
        return record

    def revoke(self, site_id: str) -> SiteRecord:
        """The site's key revoked for good (the account must be pushed)."""
        old = self.site(site_id)
        revoked = SiteRecord(**{**asdict(old), "revoked": True})
        state = self._state()
        state["sites"][site_id] = asdict(revoked)
        self._save(state)
        self._revoke_key(old.user, int(time.time()))
        return revoked

    def _revoke_key(self, user: str, at: int) -> None:
        """Every JWT of ``user`` issued until ``at`` refused, in a new account JWT."""
        state = self._state()
        state["revoked"][user] = at
        # Updates are ordered by issue time: two in one second must still be told apart.
        state["account_iat"] = max(at, state["account_iat"] + 1)
        self._save(state)
        self._write_server_config()

    def _credentials(self, record: SiteRecord, deliver: Deliver) -> SiteRecord:
        key = Key.new("user")
        granted = permissions.site(record.site_id, key.public)
        token = self._user_jwt(key, f"site-{record.site_id}", granted, record.key_issued)
        deliver(creds_text(token, key.seed))
        issued = SiteRecord(**{**asdict(record), "user": key.public})
        state = self._state()
        state["sites"][record.site_id] = asdict(issued)
        self._save(state)
        return issued
