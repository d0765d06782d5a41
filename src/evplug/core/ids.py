"""Identifiers as they enter the system: site, fuze and plug ids, checked once at the door.

A site id is a token of the site's bus subjects (``telemetry.<site_id>``), so it may hold no
``.``, ``*``, ``>`` or whitespace; plug ids appear in URL paths and QR codes. Each check returns
the id unchanged or raises ``ValueError`` with a message that says how to fix it.
"""

from __future__ import annotations

import re

SITE_ID_MAX = 64  # sites.id
PLUG_ID_MAX = 128  # plugs.id
FUZE_ID_MAX = 63  # circuits.id is "<site_id>/<fuze_id>", at most 128

_SITE_CHARS = "A-Za-z0-9_-"
_PLUG_CHARS = "A-Za-z0-9_:-"
_SITE_HINT = "letters, digits, '-' and '_'"
_PLUG_HINT = "letters, digits, '-', '_' and ':'"


def check_site_id(site_id: object) -> str:
    """A site id: 1..64 of letters, digits, ``-``, ``_``, e.g. ``garage-7``."""
    return _check("site id", site_id, SITE_ID_MAX, _SITE_CHARS, _SITE_HINT, "garage-7")


def check_fuze_id(fuze_id: object) -> str:
    """A fuze id, the site's own name for a circuit: 1..63 of letters, digits, ``-_:``."""
    return _check("fuze id", fuze_id, FUZE_ID_MAX, _PLUG_CHARS, _PLUG_HINT, "A")


def check_plug_id(plug_id: object) -> str:
    """A plug id: 1..128 of letters, digits, ``-_:``, e.g. ``shelly:a8032ab12345:0``."""
    return _check("plug id", plug_id, PLUG_ID_MAX, _PLUG_CHARS, _PLUG_HINT, "shelly:a8032ab12345:0")


def _check(what: str, value: object, max_len: int, chars: str, allowed: str, example: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a {what} must be text, not {value!r}: e.g. {example!r}")
    if not value:
        raise ValueError(f"a {what} may not be empty: give one such as {example!r}")
    if len(value) > max_len:
        raise ValueError(
            f"{what} {value[:24]!r}… is {len(value)} characters long: use at most {max_len}"
        )
    if not re.fullmatch(f"[{chars}]+", value):
        bad = "".join(sorted(set(re.sub(f"[{chars}]", "", value))))
        suggestion = re.sub(f"[^{chars}]+", "-", value).strip("-") or example
        raise ValueError(
            f"{what} {value!r} may not contain {bad!r}: use only {allowed}, e.g. {suggestion!r}"
        )
    return value
