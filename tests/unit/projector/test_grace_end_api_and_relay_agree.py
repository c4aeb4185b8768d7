"""The end of a grace period as the API states it and as the relay enforces it fall on the same instant.

The relay's cache entries hold expiries in unix seconds. The API used to take `now` with its microseconds, so
`previous_secret.expires_at` read e.g. 10:00:00.700000Z while the relay refused the previous password from
10:00:00.000 on, up to a second before (the API still listed it as valid and answered 409 rotation_in_progress): a
review's probe, kept as this test. The API now cuts a grace period's end to its whole second (CONTRACT §6: "works
until its expires_at and is refused from then on")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from taifa_api.domain import lifecycle
from taifa_api.domain.models import CredentialRecord, SecretRecord
from taifa_events import CredentialCreated, hash_secret, make_envelope
from taifa_events.secrets import initial_secret_id
from taifa_projector.adapters.redis_cache import to_cache_entry
from taifa_projector.domain.credentials import apply_credential_event, auth_entry_of
from taifa_relay.domain import credentials as relay_rules

ROTATED_AT = datetime(2026, 11, 28, 9, 0, 0, 700_000, tzinfo=UTC)  # the API's clock, with its microseconds
GRACE = 3600


def test_the_relay_accepts_the_previous_password_until_the_expires_at_the_api_returned() -> None:
    account, domain_id, credential_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    username, old_password = f"{str(account)[:8]}@example.com", "old-password"
    created_at = ROTATED_AT - timedelta(days=3)
    record = CredentialRecord(credential_id, account, domain_id, username, True, created_at, None)
    first = SecretRecord(initial_secret_id(credential_id), credential_id, created_at)

    # The API: POST .../rotate with grace 3600 (the domain rule the route runs), and what it returns.
    rotated, _new_secret, _hash, event = lifecycle.rotate(record, [first], GRACE, ROTATED_AT)
    expires_at = rotated.previous.expires_at
    assert expires_at == datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)  # cut to its whole second

    # The projector: the creation and that rotation folded into the row, and the cache entry it writes.
    created = CredentialCreated(
        credential_id=credential_id, account_id=account, domain_id=domain_id, domain="example.com",
        username=username, secret_hash=hash_secret(old_password), hash_scheme="sha256", created_at=created_at,
        secret_id=first.secret_id,
    )  # fmt: skip
    row = apply_credential_event(None, make_envelope(created, stream_version=1, position=1, correlation_id="t"))
    row = apply_credential_event(row, make_envelope(event, stream_version=2, position=2, correlation_id="t"))
    assert row is not None
    entry = to_cache_entry(auth_entry_of(row))

    # Half a second before the API's expires_at: the API lists the previous secret as valid (and refuses a new
    # rotation with 409 rotation_in_progress) ...
    moment = expires_at - timedelta(seconds=0.5)
    listed = lifecycle.valid_secrets([rotated.previous, _new_secret], moment)
    assert first.secret_id in {s.secret_id for s in listed}
    # ... so the relay, at that same instant, should accept the previous password.
    judged = relay_rules.attempt(entry, old_password, "192.0.2.7", moment.timestamp())
    assert relay_rules.login_of(judged) is not None, (
        f"relay refuses the previous password at {moment.isoformat()} although the API says it works until "
        f"{expires_at.isoformat()} (cache expiry {[s.expires_at for s in entry.secrets]})"
    )
    # At expires_at both refuse it.
    ended = lifecycle.valid_secrets([rotated.previous, _new_secret], expires_at)
    assert first.secret_id not in {s.secret_id for s in ended}
    assert relay_rules.login_of(relay_rules.attempt(entry, old_password, "192.0.2.7", expires_at.timestamp())) is None
