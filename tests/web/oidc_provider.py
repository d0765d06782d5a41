"""The real OpenID Connect provider of tests/web/oidc (npm ``oidc-provider``) on loopback, and
a browser's walk through its login and consent forms."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from urllib.parse import urljoin

import httpx

HERE = Path(__file__).parent / "oidc"
INSTALL = "tools/install_test_tools.sh"


@dataclass(frozen=True)
class Provider:
    issuer: str
    client_id: str
    client_secret: str


@contextmanager
def oidc_provider(redirect_uri: str) -> Iterator[Provider]:
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError(
            f"the test OIDC provider needs Node.js and its packages: run {INSTALL} (make test does)"
        )
    client = Provider("", "evplug-test", "a-client-secret-of-some-length")
    env = {
        **os.environ,
        "PORT": "0",
        "CLIENT_ID": client.client_id,
        "CLIENT_SECRET": client.client_secret,
        "REDIRECT_URI": redirect_uri,
    }
    process = subprocess.Popen(
        [node, str(HERE / "provider.mjs")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("ready "):
            raise RuntimeError(f"the test OIDC provider did not start: {line!r}")
        yield Provider(line.split()[1], client.client_id, client.client_secret)
    finally:
        process.terminate()
        process.wait(10)


_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
_INPUT = re.compile(r'<input[^>]*name="([^"]+)"(?:[^>]*value="([^"]*)")?', re.S)


async def log_in_at_provider(url: str, login: str, back_to: str) -> str:
    """As a browser: open the issuer's URL, sign in as ``login``, consent; the URL it sends
    the browser back to (starting with ``back_to``)."""
    async with httpx.AsyncClient(timeout=10) as browser:
        answer = await browser.get(url)
        for _ in range(12):
            if answer.is_redirect:
                location = urljoin(str(answer.url), answer.headers["location"])
                if location.startswith(back_to):
                    return location
                answer = await browser.get(location)
                continue
            form = _FORM.search(answer.text)
            assert form is not None, answer.text[:500]
            action, body = form.groups()
            fields = {name: unescape(value or "") for name, value in _INPUT.findall(body)}
            if "login" in fields:
                fields.update(login=login, password="anything")
            answer = await browser.post(urljoin(str(answer.url), unescape(action)), data=fields)
    raise AssertionError("the provider never sent the browser back")
