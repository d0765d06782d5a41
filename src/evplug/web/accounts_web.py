"""What the account routes share: the service, the mailer and the demo's offer of
credentials, kept on ``app.state.accounts``; ``install_accounts`` puts it all on an app."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import BackgroundTasks, FastAPI, Request

from evplug.clock import Clock, SystemClock
from evplug.store.repository import Repository
from evplug.web.accounts import AccountPolicy, AccountService, SignUpHook
from evplug.web.auth import Authenticator, SessionPolicy, install_auth
from evplug.web.csrf import CsrfProtect
from evplug.web.mail import LogMailer, Mail, Mailer
from evplug.web.oidc import OidcConfig, OidcLogin
from evplug.web.pages import mount_static
from evplug.web.rate_limit import RateLimiter


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    email: str
    password: str


@dataclass(slots=True)
class AccountsWeb:
    service: AccountService
    mailer: Mailer
    demo: DemoCredentials | None = None
    oidc: OidcLogin | None = None

    def deliver(self, background: BackgroundTasks, mail: Mail | None) -> str | None:
        """Send after the answer (so its time tells nothing); the link when the page shows it."""
        if mail is None:
            return None
        background.add_task(self.mailer.send, mail)
        return mail.link if self.mailer.shows_links else None


def accounts_web(request: Request) -> AccountsWeb:
    return request.app.state.accounts


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True, slots=True)
class AccountsConfig:
    """How the app's accounts work; the assembly builds it from the settings."""

    policy: AccountPolicy
    sessions: SessionPolicy = field(default_factory=SessionPolicy)
    mailer: Mailer = field(default_factory=LogMailer)
    demo: DemoCredentials | None = None
    oidc: OidcConfig | None = None  # sign-in with an OIDC issuer, when one is configured
    clock: Clock = field(default_factory=SystemClock)
    # Each new account, by sign-up or by OIDC: the assembly makes its payments customer.
    on_sign_up: SignUpHook | None = None


def install_accounts(app: FastAPI, repo: Repository, config: AccountsConfig) -> None:
    """Sessions, CSRF protection, the account API and pages, the shared layout's static files.

    Call before adding the body limit, which must stay outermost (CSRF reads form bodies).
    """
    from evplug.web import accounts_api, accounts_pages

    auth = Authenticator(repo.accounts, config.clock, config.sessions)
    install_auth(app, auth)
    service = AccountService(
        repo.accounts, config.clock, RateLimiter(config.clock), config.policy, config.on_sign_up
    )
    oidc = None
    if config.oidc is not None:
        lifetime_s = config.policy.lifetimes.oidc_s
        oidc = OidcLogin(
            config.oidc,
            config.policy.public_url,
            repo.accounts,
            config.clock,
            lifetime_s,
            service.welcome,
        )
    app.state.accounts = AccountsWeb(service, config.mailer, config.demo, oidc)
    secure = config.sessions.secure_cookies
    app.add_middleware(
        CsrfProtect,
        secure=lambda scope: secure if secure is not None else scope["scheme"] == "https",
    )
    app.include_router(accounts_api.router)
    app.include_router(accounts_pages.router)
    mount_static(app)
