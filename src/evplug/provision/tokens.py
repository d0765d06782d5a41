"""NATS decentralized-auth tokens: nkeys, JWT v2 claims signed with them, credentials files.

A JWT here is what ``nsc`` writes: a header ``{"typ":"JWT","alg":"ed25519-nkey"}``, the claims
(``jti``, ``iat``, ``iss``, ``sub``, ``name`` and the ``nats`` object with its ``type`` and
``version: 2``), each base64url without padding, and the issuer's ed25519 signature of
``header.claims``. Keys and signatures come from ``nkeys`` (the NATS project's own library);
the claims are encoded here, a few lines, rather than through a general JWT library.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import nkeys

Kind = Literal["operator", "account", "user"]

_PREFIX = {
    "operator": nkeys.PREFIX_BYTE_OPERATOR,
    "account": nkeys.PREFIX_BYTE_ACCOUNT,
    "user": nkeys.PREFIX_BYTE_USER,
}
_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_CREDS = re.compile(
    r"-{3,}BEGIN NATS USER JWT-{3,}\s*(?P<jwt>\S+)\s*-{3,}END NATS USER JWT-{3,}.*?"
    r"-{3,}BEGIN USER NKEY SEED-{3,}\s*(?P<seed>\S+)\s*-{3,}END USER NKEY SEED-{3,}",
    re.DOTALL,
)


class CredentialsError(ValueError):
    """A credentials or key file that cannot be used; the message names the file."""


@dataclass(frozen=True, slots=True)
class Key:
    """An nkey: its seed (the secret, ``S...``) and its public key (``O...``/``A...``/``U...``)."""

    seed: str
    public: str

    @classmethod
    def new(cls, kind: Kind) -> Key:
        return cls.from_seed(nkeys.encode_seed(os.urandom(32), _PREFIX[kind]).decode())

    @classmethod
    def from_seed(cls, seed: str) -> Key:
        try:
            pair = nkeys.from_seed(bytearray(seed.strip().encode()))
        except (nkeys.NkeysError, ValueError) as exc:
            raise CredentialsError(f"not an nkey seed ({type(exc).__name__})") from None
        return cls(seed.strip(), pair.public_key.decode())

    def sign(self, data: bytes) -> bytes:
        return bytes(nkeys.from_seed(bytearray(self.seed.encode())).sign(data))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(issuer: Key, subject: str, name: str, kind: Kind, iat: int, nats: dict[str, Any]) -> str:
    """A JWT of ``kind`` for ``subject``, signed by ``issuer``, issued at ``iat`` (unix s)."""
    claims: dict[str, Any] = {
        "jti": "",
        "iat": iat,
        "iss": issuer.public,
        "name": name,
        "sub": subject,
        "nats": {**nats, "type": kind, "version": 2},
    }
    # As the Go library does: the id is a hash of the claims without it.
    unhashed = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
    claims["jti"] = base64.b32encode(hashlib.sha256(unhashed).digest()).decode().rstrip("=")
    body = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{body}.{_b64(issuer.sign(body.encode()))}"


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified (the broker verifies; this only reads what we issued)."""
    try:
        _, payload, _ = token.split(".")
        claims = json.loads(_unb64(payload))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"not a NATS JWT ({type(exc).__name__})") from None
    if not isinstance(claims, dict):
        raise CredentialsError("not a NATS JWT (its claims are not an object)")
    return claims


def creds_text(user_jwt: str, user_seed: str) -> str:
    """A standard NATS credentials file, as ``nsc`` writes it and every client reads it."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user_seed}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


def read_creds(path: Path) -> tuple[str, Key]:
    """The user JWT and key of a credentials file; a file that is not one says so."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"{path}: cannot read the credentials file: {exc}") from None
    found = _CREDS.search(text)
    if found is None:
        raise CredentialsError(
            f"{path}: not a NATS credentials file (no user JWT and seed blocks):"
            " write a new one with `evplug site rotate-key`"
        )
    try:
        key = Key.from_seed(found["seed"])
        subject = claims_of(found["jwt"]).get("sub")
    except CredentialsError as exc:
        raise CredentialsError(f"{path}: {exc}") from None
    if subject != key.public:
        raise CredentialsError(f"{path}: the seed does not belong to the user JWT")
    return found["jwt"], key


def write_secret(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(partial, path)
