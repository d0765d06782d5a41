"""Subject matching and NATS's naming rules, shared by every transport."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evplug.bus.base import check_bucket, check_key, check_key_pattern, subject_matches

KEY_CHARS = "-/_=ABCXYZabcxyz0189"
token = st.text(alphabet=KEY_CHARS, min_size=1, max_size=8)
valid_key = st.lists(token, min_size=1, max_size=5).map(".".join)
# Anything outside NATS's key alphabet, whitespace and wildcards included.
bad_char = st.characters(
    exclude_characters="-/_=.", exclude_categories=("Lu", "Ll", "Nd")
) | st.sampled_from(" \t\n*>é٣")


def test_subject_wildcards() -> None:
    assert subject_matches("telemetry.*", "telemetry.site-1")
    assert not subject_matches("telemetry.*", "telemetry.site-1.x")
    assert subject_matches("telemetry.>", "telemetry.site-1.x")
    assert not subject_matches("telemetry.>", "telemetry")
    assert not subject_matches("commands.site-1", "commands.site-2")


@given(valid_key)
def test_keys_of_dot_separated_valid_tokens_are_accepted(key: str) -> None:
    assert check_key(key) == key
    assert check_key_pattern(key) == key


@given(valid_key, bad_char, st.integers(min_value=0))
def test_a_key_with_a_character_outside_the_alphabet_is_refused(
    key: str, bad: str, where: int
) -> None:
    at = where % (len(key) + 1)
    with pytest.raises(ValueError, match="invalid key"):
        check_key(key[:at] + bad + key[at:])


@pytest.mark.parametrize("key", ["", ".a", "a.", "a..b", "."])
def test_a_key_with_an_empty_token_is_refused_and_the_error_names_the_rule(key: str) -> None:
    with pytest.raises(ValueError, match=r"no leading, trailing or double dot") as error:
        check_key(key)
    assert repr(key) in str(error.value)


@pytest.mark.parametrize("pattern", ["*", ">", "site-1.>", "*.x", "a.*.c"])
def test_patterns_take_wildcard_tokens(pattern: str) -> None:
    assert check_key_pattern(pattern) == pattern


@pytest.mark.parametrize("pattern", ["", ">.x", "a.>.b", "a*", "a.b>", "a..*", "site-1."])
def test_a_malformed_pattern_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="invalid key pattern"):
        check_key_pattern(pattern)


@pytest.mark.parametrize("key", ["*", "a.>", "site-1.*"])
def test_wildcards_are_patterns_not_keys(key: str) -> None:
    with pytest.raises(ValueError, match="invalid key"):
        check_key(key)


@pytest.mark.parametrize("bucket", ["plug_status", "plug-status", "B2"])
def test_valid_bucket_names_are_accepted(bucket: str) -> None:
    assert check_bucket(bucket) == bucket


@pytest.mark.parametrize("bucket", ["", "plug.status", "plug status", "plug/status", "plug\n"])
def test_a_bucket_name_outside_the_rule_is_refused(bucket: str) -> None:
    with pytest.raises(ValueError, match="letters, digits, - and _ only") as error:
        check_bucket(bucket)
    assert repr(bucket) in str(error.value)
