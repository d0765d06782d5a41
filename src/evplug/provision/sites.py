"""A site's files, and telling the running broker of a change to the account.

The broker resolves accounts with the ``full`` resolver: an account JWT signed by the operator
and sent to ``$SYS.REQ.CLAIMS.UPDATE`` by a system-account user replaces the one it has, at once.
Users of a key revoked in it are disconnected and refused from then on; nothing restarts. A
broker that is not running reads the latest account from its config when it starts.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import nats
import nats.errors

from evplug.core.ids import SITE_ID_MAX, check_site_id
from evplug.provision.authority import SYSTEM, Authority, ProvisionError
from evplug.provision.tokens import write_secret

SITE_FILE = "site.toml"
CREDS_FILE = "site.creds"
CLAIMS_UPDATE = "$SYS.REQ.CLAIMS.UPDATE"


class BrokerAway(ProvisionError):
    """The broker is not reachable: the change waits in its config for its next start."""


def site_id_for(name: str) -> str:
    """The id a site named ``name`` gets: lower case, words joined by ``-``."""
    slug = re.sub(r"[^a-z0-9_]+", "-", name.lower()).strip("-")[:SITE_ID_MAX].strip("-")
    if not slug:
        raise ProvisionError(f"site name {name!r} has no letters or digits to make an id from")
    return check_site_id(slug)


def write_site_files(out_dir: Path, site_id: str, bus_url: str, creds: str) -> None:
    """``site.toml`` (a relay manager's site file, no relays yet) and ``site.creds``."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_secret(out_dir / CREDS_FILE, creds)
        site_file = out_dir / SITE_FILE
        site_file.write_text(
            "# The site's relay manager runs with `evplug relay --config site.toml`.\n"
            "# Add its relays as [[devices]] tables (see `evplug devices probe URL`).\n"
            f"site_id = {json.dumps(site_id)}\n\n"
            "[bus]\n"
            f"url = {json.dumps(bus_url)}\n"
            f"credentials = {json.dumps(CREDS_FILE)}  # secret: only this site's relay reads it\n",
            encoding="utf-8",
        )
    except OSError as exc:
        raise ProvisionError(
            f"cannot write to {out_dir} ({exc.strerror}): pass another --out"
        ) from None


def write_creds(out_dir: Path, creds: str) -> None:
    path = out_dir / CREDS_FILE
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_secret(path, creds)
    except OSError as exc:
        raise ProvisionError(f"cannot write {path} ({exc.strerror}): pass another --out") from None


async def push_account(authority: Authority, url: str, timeout_s: float = 5.0) -> None:
    """Send the account as it is now to the broker at ``url``; it applies it at once."""
    parts = urlsplit(url)
    try:  # the client would retry a refused connect for minutes: ask the socket first
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(parts.hostname, parts.port or 4222)
            writer.close()
            await writer.wait_closed()
        nc = await nats.connect(
            url,
            user_credentials=str(authority.creds_file(SYSTEM)),
            allow_reconnect=False,
            max_reconnect_attempts=1,
            connect_timeout=max(1, round(timeout_s)),
            error_cb=_quiet,
        )
    except nats.errors.Error as exc:
        if "authorization" in str(exc).lower():
            raise ProvisionError(
                f"the broker at {url} does not trust {authority.dir}: run this with the data dir"
                " its `evplug broker --data-dir` was given"
            ) from None
        raise BrokerAway(_away(url, authority, exc)) from None
    except (OSError, TimeoutError) as exc:
        raise BrokerAway(_away(url, authority, exc)) from None
    try:
        reply = await nc.request(CLAIMS_UPDATE, authority.latest_account_jwt().encode(), timeout_s)
        answer = json.loads(reply.data)
    except (TimeoutError, nats.errors.Error, ValueError) as exc:
        raise ProvisionError(
            f"the broker at {url} did not take the account update ({type(exc).__name__}): is it"
            f" the broker of {authority.dir.parent} (`evplug broker --data-dir`)?"
        ) from None
    finally:
        await nc.close()
    if "error" in answer:
        error = answer["error"]
        raise ProvisionError(
            f"the broker at {url} refused the account update: {error.get('description', error)}"
        )


async def _quiet(error: Exception) -> None:
    """The client's own reports: what matters is raised, in one line."""


def _away(url: str, authority: Authority, error: BaseException) -> str:
    return (
        f"the broker at {url} is not reachable ({type(error).__name__}): the change is saved"
        f" and takes effect when a broker starts on {authority.dir.parent}"
    )
