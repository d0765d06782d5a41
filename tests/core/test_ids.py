"""Ids checked where they enter: what passes can name a bus subject and a URL path."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evplug.contracts import subjects
from evplug.core.ids import (
    FUZE_ID_MAX,
    PLUG_ID_MAX,
    SITE_ID_MAX,
    check_fuze_id,
    check_plug_id,
    check_site_id,
)

SITE_ALPHABET = string.ascii_letters + string.digits + "-_"
PLUG_ALPHABET = SITE_ALPHABET + ":"


@pytest.mark.parametrize(
    "plug_id", ["shelly:a8032ab12345:0", "sim:demo01:3", "sonoff:1000abcdef:0"]
)
def test_plug_ids_of_every_family_pass(plug_id: str) -> None:
    assert check_plug_id(plug_id) == plug_id


@pytest.mark.parametrize(
    ("check", "bad", "fix"),
    [
        (check_site_id, "", "may not be empty"),
        (check_site_id, "garage.7", "'garage-7'"),
        (check_site_id, "garage 7", "'garage-7'"),
        (check_site_id, "a*b", "'a-b'"),
        (check_site_id, "a>", "'a'"),
        (check_site_id, "x" * (SITE_ID_MAX + 1), f"at most {SITE_ID_MAX}"),
        (check_site_id, 7, "must be text"),
        (check_plug_id, "shelly/a8:0", "'shelly-a8:0'"),
        (check_plug_id, "x" * (PLUG_ID_MAX + 1), f"at most {PLUG_ID_MAX}"),
        (check_fuze_id, "A/B", "'A-B'"),
        (check_fuze_id, "x" * (FUZE_ID_MAX + 1), f"at most {FUZE_ID_MAX}"),
    ],
)
def test_a_bad_id_is_refused_with_the_fix(check, bad: object, fix: str) -> None:
    with pytest.raises(ValueError) as raised:
        check(bad)
    assert fix in str(raised.value)


@given(st.text(SITE_ALPHABET, min_size=1, max_size=SITE_ID_MAX))
def test_an_accepted_site_id_is_exactly_one_subject_token(site_id: str) -> None:
    subject = subjects.for_site(subjects.TELEMETRY, check_site_id(site_id))
    assert subject.split(".") == [subjects.TELEMETRY, site_id]
    assert subjects.site_of(subject) == site_id


@given(st.text(min_size=1, max_size=SITE_ID_MAX))
def test_a_site_id_with_any_other_character_is_refused(site_id: str) -> None:
    if set(site_id) <= set(SITE_ALPHABET):
        assert check_site_id(site_id) == site_id
    else:
        with pytest.raises(ValueError):
            check_site_id(site_id)
        with pytest.raises(ValueError):
            subjects.for_site(subjects.TELEMETRY, site_id)


@given(st.text(min_size=1, max_size=PLUG_ID_MAX))
def test_a_plug_id_passes_only_in_the_safe_alphabet(plug_id: str) -> None:
    if set(plug_id) <= set(PLUG_ALPHABET):
        assert check_plug_id(plug_id) == plug_id
    else:
        with pytest.raises(ValueError, match="use only letters, digits"):
            check_plug_id(plug_id)
