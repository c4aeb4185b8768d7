"""A transaction's daily-limit refusal is memoised for its further recipients (no script call each), but only for
the UTC day and the limits it was made under. It used to hold after 00:00 UTC (CONTRACT §7: the count resets then)
and after a PATCH raised messages_per_day (§6: enforced from the 200 on): a review's probes, kept as these tests.
The counters here are keyed by UTC day as the Redis adapter keys them (taifa_events.usage.utc_day)."""

from __future__ import annotations

from taifa_events import usage
from taifa_relay.application.ports import RecipientTaken
from taifa_relay.domain import replies

from tests.unit.relay.relay_fakes import Clock, FakeSendingLimits, entry, new_state, run, world

# 2026-11-28T23:59:59Z
LAST_SECOND = 1_795_910_399.0
assert usage.utc_day(LAST_SECOND) == "20261128"
assert usage.utc_day(LAST_SECOND + 1) == "20261129"


class DayKeyedLimits(FakeSendingLimits):
    """The shared counters keyed by UTC day, as RedisSendingLimits keys them (taifa:quota:<account>:<yyyymmdd>)."""

    async def take_recipient(
        self, credential_id: str, account_id: str, per_day: int | None, quota: int, now: float
    ) -> RecipientTaken:
        self._check()
        key = usage.account_quota_key(account_id, usage.utc_day(now))
        count = self.counts.get(key, 0)
        if count + 1 > quota:
            return RecipientTaken("quota", count)
        self.counts[key] = count + 1
        return RecipientTaken(None, count + 1)


def test_a_daily_quota_refusal_does_not_outlive_the_utc_day_it_was_made_in() -> None:
    clock = Clock(LAST_SECOND)
    w = world(clock=clock, plan_quotas={"free": 1, "starter": 1, "pro": 1, "enterprise": 1})
    w.submission.sending = w.sending = DayKeyedLimits()
    w.cache.entries["user1"] = entry()
    state = new_state()
    assert run(w.submission.authenticate(state, b"user1", b"right")).reply.startswith("235")
    assert run(w.submission.mail_from(state, "app@own.example")).reply.startswith("250")
    assert run(w.submission.rcpt_to(state, 0, "a@dest.example")).reply.startswith("250")  # the day's one recipient
    assert run(w.submission.rcpt_to(state, 1, "b@dest.example")).reply == replies.QUOTA_REACHED  # 23:59:59
    clock.now = LAST_SECOND + 1.0  # 00:00:00 UTC: the quota has reset (a new day's key, empty)
    third = run(w.submission.rcpt_to(state, 1, "c@dest.example"))
    assert third.reply.startswith("250"), f"after 00:00 UTC the new day's quota is untouched, got {third.reply!r}"


def test_a_per_day_limit_raised_during_the_transaction_applies_from_its_200() -> None:
    """Same memo, other symptom: CONTRACT §6 "From the 200 on the relay enforces them" (a PATCH raising
    messages_per_day). The notice makes the session re-read its entry (new limits kept), yet the next RCPT is refused
    from the memo without a count."""
    from taifa_events.auth_cache import change_message
    from taifa_events.events import CredentialLimits

    clock = Clock(LAST_SECOND - 3600)
    w = world(clock=clock)
    cred = entry().model_copy(update={"limits": CredentialLimits(messages_per_day=1)})
    w.cache.entries["user1"] = cred
    state = new_state()
    assert run(w.submission.authenticate(state, b"user1", b"right")).reply.startswith("235")
    assert run(w.submission.mail_from(state, "app@own.example")).reply.startswith("250")
    assert run(w.submission.rcpt_to(state, 0, "a@dest.example")).reply.startswith("250")
    assert run(w.submission.rcpt_to(state, 1, "b@dest.example")).reply == replies.DAILY_LIMIT_REACHED
    w.cache.entries["user1"] = cred.model_copy(
        update={"limits": CredentialLimits(messages_per_day=5), "position": cred.position + 1}
    )
    w.sessions.on_channel_message(change_message("user1", cred.credential_id))  # the PATCH's notice
    assert run(w.submission.before_rcpt_or_data(state)) is None  # re-read: the session now holds the new limit
    assert state.limits is not None and state.limits.messages_per_day == 5
    again = run(w.submission.rcpt_to(state, 1, "c@dest.example"))
    assert again.reply.startswith("250"), f"limit raised to 5 with 1 sent, got {again.reply!r}"
