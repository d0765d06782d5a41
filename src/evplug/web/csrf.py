"""Cross-site request forgery protection for every state-changing request, API and form alike.

Three checks, any failing refuses the request with 403 before the app runs:

- ``Sec-Fetch-Site: cross-site`` (browsers send it): another site made this request;
- an ``Origin`` that is not this server's own;
- the double-submit token: the ``evplug_csrf`` cookie (set on the first response to any
  request) must match the ``X-CSRF-Token`` header (scripts) or the ``csrf_token`` field of a
  URL-encoded form. Another site can make a browser send our cookie, never read it.

Pages get the token from the request: templates render ``{{ csrf_input(request) }}`` inside every
``<form method="post">`` and the base layout carries ``<meta name="csrf-token">``, which
``/static/app.js`` copies into the header of its ``fetch`` calls. Multipart forms must send the
header (their body is not parsed here).
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from markupsafe import Markup, escape
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "evplug_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_TOKEN_LENGTH = 43  # secrets.token_urlsafe(32)


def csrf_token(request: Request) -> str:
    """This browser's token, for a page to send back with its forms and scripts."""
    return request.scope["state"]["csrf_token"]


def csrf_input(request: Request) -> Markup:
    """The hidden form field every ``<form method="post">`` carries."""
    value = escape(csrf_token(request))
    return Markup(f'<input type="hidden" name="{CSRF_FIELD}" value="{value}">')


class CsrfProtect:
    """ASGI middleware. Install it inside the body limit, which caps what it reads of a form."""

    def __init__(self, app: ASGIApp, secure: Callable[[Scope], bool]) -> None:
        self.app = app
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cookie = _cookie(headers.get("cookie", ""), CSRF_COOKIE)
        fresh = cookie is None or len(cookie) != _TOKEN_LENGTH
        token = secrets.token_urlsafe(32) if fresh else cookie
        scope.setdefault("state", {})["csrf_token"] = token
        if scope["method"] not in SAFE_METHODS:
            sent, receive = await _sent_token(headers, receive)
            problem = _problem(scope, headers, None if fresh else token, sent)
            if problem is not None:
                await _refuse(send, problem)
                return
        if not fresh:
            await self.app(scope, receive, send)
            return
        set_cookie = _set_cookie(token, self.secure(scope))

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], set_cookie]}
            await send(message)

        await self.app(scope, receive, with_cookie)


def _problem(scope: Scope, headers: Headers, cookie: str | None, sent: str | None) -> str | None:
    if headers.get("sec-fetch-site") == "cross-site":
        return "another site sent this request"
    origin = headers.get("origin")
    if origin is not None and not _same_origin(scope, headers, origin):
        return f"it came from {origin}, not from this site"
    if cookie is None:
        return "this browser has no CSRF cookie yet"
    if sent is None:
        return f"it carries no CSRF token (the {CSRF_HEADER} header or {CSRF_FIELD} form field)"
    if not hmac.compare_digest(cookie.encode(), sent.encode()):
        return "its CSRF token does not match this browser's"
    return None


def _same_origin(scope: Scope, headers: Headers, origin: str) -> bool:
    parts = urlsplit(origin)
    host = headers.get("host", "")
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


async def _sent_token(headers: Headers, receive: Receive) -> tuple[str | None, Receive]:
    """The token the request carries, and a ``receive`` that still yields the whole body."""
    if header := headers.get(CSRF_HEADER):
        return header, receive
    if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None, receive
    messages: list[Message] = []
    body = b""
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    fields = parse_qs(body.decode("latin-1"), keep_blank_values=True)
    sent = fields.get(CSRF_FIELD, [None])[0]

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return sent, replay


def _cookie(header: str, name: str) -> str | None:
    jar = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # a malformed Cookie header: as if there were none
        return None
    morsel = jar.get(name)
    return None if morsel is None else morsel.value


def _set_cookie(token: str, secure: bool) -> tuple[bytes, bytes]:
    # HttpOnly: pages read the token from the markup, never from document.cookie.
    value = f"{CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax"
    return b"set-cookie", (value + ("; Secure" if secure else "")).encode()


async def _refuse(send: Send, problem: str) -> None:
    body = json.dumps(
        {
            "detail": f"refused as a possible cross-site request forgery: {problem}. Reload the"
            " page and try again; scripts send the page's csrf-token meta value in X-CSRF-Token"
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
