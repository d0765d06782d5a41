"""Sign in with Google, or any OpenID Connect issuer: the authorization code flow with PKCE.

authlib drives the flow (authorization URL, code for tokens); the ID token is checked with
joserfc against the issuer's published keys (signature, issuer, audience, expiry, nonce). The
login's state, nonce and PKCE verifier wait in the one-time tokens table under the state's hash,
so a callback is taken once, within minutes, and needs no session of its own.

An identity whose email the issuer says is verified signs in to the account with that email,
made on first use; an unverified email is refused (anyone could claim it at some issuers).
"""

from __future__ import annotations

import json
import secrets
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from authlib.deprecate import AuthlibDeprecationWarning
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from evplug.clock import Clock
from evplug.store.accounts import Accounts, EmailTaken
from evplug.web.accounts import Purpose, SignUpHook, safe_next
from evplug.web.auth import hash_token

with warnings.catch_warnings():
    # It warns that it will prefer "httpx2" one day; httpx is what this project uses.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

log = structlog.get_logger(__name__)
CALLBACK_PATH = "/signin/oidc/callback"


@dataclass(frozen=True, slots=True)
class OidcConfig:
    issuer_url: str
    client_id: str
    client_secret: str
    name: str = "Google"  # what the button says: "Sign in with <name>"
    timeout_s: float = 10.0


class OidcFailed(Exception):
    """The sign-in did not complete; the message is for the person trying."""


class OidcLogin:
    def __init__(
        self,
        config: OidcConfig,
        public_url: str,
        accounts: Accounts,
        clock: Clock,
        lifetime_s: float,
        on_new_account: SignUpHook | None = None,
    ) -> None:
        self.config = config
        self.on_new_account = on_new_account
        self.redirect_uri = public_url + CALLBACK_PATH
        self.accounts = accounts
        self.clock = clock
        self.lifetime_ms = round(lifetime_s * 1000)
        self._metadata: dict[str, Any] | None = None

    def _client(self) -> AsyncOAuth2Client:
        c = self.config
        return AsyncOAuth2Client(
            client_id=c.client_id,
            client_secret=c.client_secret,
            scope="openid email",
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            timeout=c.timeout_s,
        )

    async def _get(self, client: AsyncOAuth2Client, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            answer = await client.request("GET", url, **kwargs)
            answer.raise_for_status()
            return answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.error("oidc.issuer_unreachable", url=url, error=f"{type(exc).__name__}: {exc}")
            raise OidcFailed(
                f"{self.config.name} did not answer: try again later, or sign in with your email"
            ) from None

    async def metadata(self, client: AsyncOAuth2Client) -> dict[str, Any]:
        if self._metadata is None:
            url = self.config.issuer_url.rstrip("/") + "/.well-known/openid-configuration"
            self._metadata = await self._get(client, url, withhold_token=True)
        return self._metadata

    async def start(self, next_path: str) -> str:
        """The issuer's URL to send the browser to."""
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(48)
        now = self.clock.now_ms()
        payload = json.dumps({"nonce": nonce, "verifier": verifier, "next": safe_next(next_path)})
        await self.accounts.issue_token(
            hash_token(state), Purpose.OIDC, None, now, now + self.lifetime_ms, payload
        )
        async with self._client() as client:
            endpoint = (await self.metadata(client))["authorization_endpoint"]
            url, _ = client.create_authorization_url(
                endpoint, state=state, nonce=nonce, code_verifier=verifier
            )
        return url

    async def finish(self, code: str, state: str) -> tuple[str, str]:
        """The (user id, where to go) of the account the issuer vouches for."""
        taken = await self.accounts.take_token(hash_token(state), Purpose.OIDC, self.clock.now_ms())
        if taken is None:
            raise OidcFailed("this sign-in took too long or was used already: start it again")
        login = json.loads(taken.payload)
        async with self._client() as client:
            meta = await self.metadata(client)
            try:
                tokens = await client.fetch_token(
                    meta["token_endpoint"], code=code, code_verifier=login["verifier"]
                )
            except Exception as exc:  # authlib raises its own errors and httpx's
                log.error("oidc.token_refused", error=f"{type(exc).__name__}: {exc}")
                raise OidcFailed(
                    f"{self.config.name} did not confirm the sign-in: start it again"
                ) from None
            jwks = await self._get(client, meta["jwks_uri"], withhold_token=True)
            keys = KeySet.import_key_set(jwks)
            claims = self._checked_claims(tokens.get("id_token", ""), keys, login["nonce"])
            if "email" not in claims and meta.get("userinfo_endpoint"):
                info = await self._get(client, meta["userinfo_endpoint"])
                if info.get("sub") == claims["sub"]:
                    claims = {**info, **claims}
        return await self._account_for(claims), login["next"]

    def _checked_claims(self, id_token: str, keys: KeySet, nonce: str) -> dict[str, Any]:
        c = self.config
        registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": c.issuer_url.rstrip("/")},
            aud={"essential": True, "value": c.client_id},
            sub={"essential": True},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
        )  # its times against the wall clock: they are the issuer's, not ours to fake
        try:
            token = jwt.decode(id_token, keys)
            registry.validate(token.claims)
        except (JoseError, ValueError) as exc:
            log.error("oidc.id_token_refused", error=f"{type(exc).__name__}: {exc}")
            raise OidcFailed(
                f"{c.name}'s answer could not be checked: start the sign-in again"
            ) from None
        return token.claims

    async def _account_for(self, claims: dict[str, Any]) -> str:
        email = str(claims.get("email", "")).strip().lower()
        if not email or claims.get("email_verified") is not True:
            raise OidcFailed(
                f"your {self.config.name} account has no verified email address: verify it"
                f" there, or sign up here with your email"
            )
        account = await self.accounts.by_email(email)
        if account is None:
            try:
                account = await self.accounts.create(
                    uuid.uuid4().hex,
                    email,
                    email.split("@")[0],
                    None,
                    self.clock.now_ms(),
                    email_verified=True,
                )
            except EmailTaken:  # made a moment ago by a second callback
                account = await self.accounts.by_email(email)
                assert account is not None
            else:
                if self.on_new_account is not None:
                    await self.on_new_account(account.id, email)
        elif not account.email_verified:
            await self.accounts.claim(account.id)
        log.info("oidc.signed_in", user_id=account.id, issuer=self.config.issuer_url)
        return account.id
