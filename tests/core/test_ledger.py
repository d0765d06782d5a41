"""Each ledger entry is keyed by what caused it, and money moved by hand says who and why."""

from __future__ import annotations

import pytest

from evplug.core import ledger


def test_each_kind_is_keyed_by_its_own_prefix() -> None:
    assert ledger.top_up("u", "pi_1", 100, 0).idempotency_key == "pi:pi_1"
    assert ledger.session_charge("u", "s1", 40, 0).idempotency_key == "session:s1"
    refund = ledger.refund("u", "re_1", 100, 0, "stripe", "duplicate")
    assert refund.idempotency_key == "refund:re_1"
    adjustment = ledger.adjustment("u", "a1", -5, 0, "alice", "goodwill")
    assert (adjustment.idempotency_key, adjustment.actor) == ("adjustment:a1", "alice")


@pytest.mark.parametrize("key", ["session:pi_1", "pi_1", "pi:", "pi:" + "x" * 200])
def test_a_key_of_another_kind_or_shape_is_refused(key: str) -> None:
    with pytest.raises(ledger.LedgerError, match="keyed pi:<id>"):
        ledger.validate(ledger.Entry("u", ledger.EntryKind.TOP_UP, 100, key, 0))


@pytest.mark.parametrize(("actor", "reason"), [("", "goodwill"), ("alice", " "), ("", "")])
def test_refunds_and_adjustments_must_say_who_and_why(actor: str, reason: str) -> None:
    with pytest.raises(ledger.LedgerError, match="who made it"):
        ledger.adjustment("u", "a1", 5, 0, actor, reason)
    with pytest.raises(ledger.LedgerError, match="who made it"):
        ledger.refund("u", "re_1", 5, 0, actor, reason)


def test_a_refund_takes_money_out() -> None:
    assert ledger.refund("u", "re_1", 250, 0, "stripe", "requested").amount_cents == -250
    with pytest.raises(ledger.LedgerError):
        ledger.refund("u", "re_2", -250, 0, "stripe", "requested")
