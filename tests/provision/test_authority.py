"""The operator's state of the sites, and what each site's user is allowed (without a broker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evplug.bus.nats import STREAMS
from evplug.contracts import subjects
from evplug.core.ids import check_site_id
from evplug.provision import permissions
from evplug.provision.authority import Authority, ProvisionError
from evplug.provision.sites import site_id_for
from evplug.provision.tokens import claims_of, read_creds


def ignore(creds: str) -> None:
    """Delivers the credentials nowhere: only the authority's state is under test."""


@given(st.text(max_size=200))
def test_any_name_makes_a_valid_site_id_or_says_why_not(name: str) -> None:
    try:
        site_id = site_id_for(name)
    except ProvisionError as exc:
        assert "has no letters or digits" in str(exc)
        return
    assert check_site_id(site_id) == site_id and site_id == site_id.lower()


def test_a_site_id_is_the_name_in_lower_case_words() -> None:
    assert site_id_for("  North Garage, Level 2 ") == "north-garage-level-2"


def test_a_rotation_revokes_the_old_key_and_a_revocation_the_current_one(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    authority.ensure()
    first = authority.issue("garage", "Garage", ignore)
    second = authority.rotate("garage", (tmp_path / "new.creds").write_text)
    assert second.user != first.user
    assert read_creds(tmp_path / "new.creds")[1].public == second.user
    revoked = authority.revoke("garage")
    account = claims_of(authority.latest_account_jwt())["nats"]
    assert set(account["revocations"]) == {first.user, second.user}
    assert [s.revoked for s in authority.sites()] == [True] == [revoked.revoked]
    with pytest.raises(ProvisionError, match="site 'garage' is revoked: create a new site"):
        authority.rotate("garage", ignore)


def test_a_rotation_whose_credentials_cannot_be_delivered_changes_nothing(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    authority.ensure()
    authority.issue("garage", "Garage", ignore)
    before = (list(authority.sites()), authority.latest_account_jwt())

    def unwritable(creds: str) -> None:
        raise ProvisionError("cannot write")

    with pytest.raises(ProvisionError, match="cannot write"):
        authority.rotate("garage", unwritable)
    assert (list(authority.sites()), authority.latest_account_jwt()) == before  # still works


def test_each_account_update_is_issued_after_the_last(tmp_path: Path) -> None:
    """The broker keeps the newest account JWT: two changes in one second must be ordered."""
    authority = Authority(tmp_path)
    authority.ensure()
    authority.issue("a", "a", ignore)
    issued = []
    for _ in range(3):
        authority.rotate("a", ignore)
        issued.append(claims_of(authority.latest_account_jwt())["iat"])
    assert issued == sorted(set(issued))


def test_the_broker_config_preloads_the_latest_account(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    authority.ensure()
    authority.issue("a", "a", ignore)
    authority.revoke("a")
    assert authority.latest_account_jwt() in authority.server_config.read_text()


def test_the_service_users_keep_their_keys_across_broker_starts(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    authority.ensure()
    before = authority.creds_file("mothership").read_text().split("SEED-----")[1]
    authority.ensure()
    assert authority.creds_file("mothership").read_text().split("SEED-----")[1] == before


def test_a_site_user_names_the_streams_and_durables_the_bus_and_relay_use() -> None:
    names = {spec.name for spec in STREAMS}
    for family in (subjects.COMMANDS, subjects.ANNOUNCE_ACK, subjects.TELEMETRY):
        assert permissions.stream_of(family) in names
    granted = permissions.site("g-1", "UKEY")
    assert "$JS.API.CONSUMER.MSG.NEXT.COMMANDS.relay-g-1-commands" in granted.publish
    assert "$JS.API.CONSUMER.MSG.NEXT.ANNOUNCE_ACK.relay-g-1-announce-ack" in granted.publish
    assert granted.subscribe == ("_INBOX.UKEY.>",)
    # No wildcard but under its own durables' acks.
    wild = [s for s in granted.publish if "*" in s or ">" in s]
    assert wild == [
        "$JS.ACK.COMMANDS.relay-g-1-commands.>",
        "$JS.ACK.ANNOUNCE_ACK.relay-g-1-announce-ack.>",
    ]
