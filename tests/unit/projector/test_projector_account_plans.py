"""The cache entry's `plan` (issue 16): the relay enforces the account's daily quota from it, so the projector gives
every entry its account's plan whichever of AccountCreated and the credential's events it consumes first."""

from __future__ import annotations

from taifa_events import AccountCreated, make_envelope
from taifa_projector.domain.fold import ReadSideFold, cache_writes

from tests.unit.projector.projector_events import Domain, at


def account_created(domain: Domain, position: int, plan: str = "pro"):
    data = AccountCreated(account_id=domain.account_id, name="Acme", plan=plan, created_at=at(position))
    return make_envelope(data, stream_version=1, position=position, correlation_id="t")


def _entry_plan(fold: ReadSideFold, domain: Domain) -> str:
    (entry,) = [e for e in fold.auth.values() if e.account_id == domain.account_id]
    return entry.plan


def test_an_entry_gets_the_plan_of_an_account_created_before_it() -> None:
    d = Domain()
    fold = ReadSideFold()
    fold.apply_all([account_created(d, 1), d.registered(2), d.verified(3), d.created(4)])
    assert _entry_plan(fold, d) == "pro"


def test_an_account_created_consumed_after_the_credential_gives_its_entries_the_plan() -> None:
    d = Domain()
    fold = ReadSideFold()
    fold.apply_all([d.registered(2), d.verified(3), d.created(4)])
    assert _entry_plan(fold, d) == "free"  # not known yet: the smallest quota
    later = ReadSideFold(auth=dict(fold.auth))  # a later batch: the store loads the account's entries
    later.apply(account_created(d, 1))
    assert _entry_plan(later, d) == "pro"
    (written,) = cache_writes(later, []).values()  # the cache gets it too, at the same position
    assert written.plan == "pro" and written.position == 4


def test_a_redelivered_account_created_changes_nothing() -> None:
    d = Domain()
    fold = ReadSideFold()
    fold.apply_all([account_created(d, 1), d.registered(2), d.verified(3), d.created(4)])
    again = ReadSideFold(auth=dict(fold.auth), plans=dict(fold.plans))
    again.apply(account_created(d, 1, plan="free"))
    assert not again.changed_auth and not again.changed_plans
    assert _entry_plan(again, d) == "pro"
