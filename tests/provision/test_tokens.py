"""NATS JWTs and credentials files, as the broker and every NATS client read them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import nkeys
import pytest

from evplug.provision.tokens import CredentialsError, Key, claims_of, creds_text, encode, read_creds


def test_a_jwt_is_signed_by_its_issuer_and_carries_v2_claims() -> None:
    account, user = Key.new("account"), Key.new("user")
    token = encode(account, user.public, "site-a", "user", 1_700_000_000, {"pub": {"allow": ["x"]}})
    header, payload, signature = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {
        "typ": "JWT",
        "alg": "ed25519-nkey",
    }
    claims = claims_of(token)
    assert (claims["iss"], claims["sub"]) == (account.public, user.public)
    assert claims["iat"] == 1_700_000_000
    assert claims["nats"] == {"pub": {"allow": ["x"]}, "type": "user", "version": 2}
    assert claims["jti"]
    signed = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    verifier = nkeys.from_seed(bytearray(account.seed.encode()))
    assert verifier.verify(f"{header}.{payload}".encode(), signed)


@pytest.mark.parametrize(("kind", "prefix"), [("operator", "O"), ("account", "A"), ("user", "U")])
def test_keys_of_each_kind_have_their_prefix_and_come_back_from_their_seed(
    kind: str, prefix: str
) -> None:
    key = Key.new(kind)  # type: ignore[arg-type]
    assert key.public.startswith(prefix) and key.seed.startswith(f"S{prefix}")
    assert Key.from_seed(key.seed) == key


def test_a_credentials_file_reads_back_its_jwt_and_key(tmp_path: Path) -> None:
    account, user = Key.new("account"), Key.new("user")
    token = encode(account, user.public, "u", "user", 1, {})
    path = tmp_path / "u.creds"
    path.write_text(creds_text(token, user.seed))
    assert read_creds(path) == (token, user)


def test_a_seed_that_does_not_belong_to_the_jwt_is_refused(tmp_path: Path) -> None:
    account, user = Key.new("account"), Key.new("user")
    path = tmp_path / "mixed.creds"
    token = encode(account, user.public, "u", "user", 1, {})
    path.write_text(creds_text(token, Key.new("user").seed))
    with pytest.raises(
        CredentialsError, match=r"mixed\.creds: the seed does not belong to the user"
    ):
        read_creds(path)


@pytest.mark.parametrize("text", ["", "garbage", "-----BEGIN NATS USER JWT-----\nx\n"])
def test_a_file_that_is_not_credentials_says_so(tmp_path: Path, text: str) -> None:
    path = tmp_path / "site.creds"
    path.write_text(text)
    with pytest.raises(CredentialsError, match=r"site\.creds: not a NATS credentials file"):
        read_creds(path)


def test_a_missing_credentials_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match=r"nowhere\.creds: cannot read the credentials"):
        read_creds(tmp_path / "nowhere.creds")
