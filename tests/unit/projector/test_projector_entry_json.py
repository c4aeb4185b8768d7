"""The auth entry's secrets JSON is written from a template (issue 18: a json.dumps per entry cost more than the rest
of the entry); it must be the same text json.dumps gives, whatever the secrets hold."""

from __future__ import annotations

import json
import uuid

from hypothesis import given
from hypothesis import strategies as st
from taifa_projector.domain.credentials import TOMBSTONE_HASH, _secrets_json, tombstone

HEX_HASHES = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
ANY_TEXT = st.text(max_size=70)  # quotes, backslashes, control and non-ASCII characters: left to json.dumps
SECRETS = st.lists(
    st.tuples(
        st.uuids(),
        st.one_of(HEX_HASHES, ANY_TEXT),
        st.one_of(st.just("sha256"), ANY_TEXT),
        st.one_of(st.none(), st.integers(min_value=-(2**40), max_value=2**40)),
    ),
    min_size=1,
    max_size=3,
)


def _dumped(secrets: list[tuple[uuid.UUID, str, str, int | None]]) -> str:
    return json.dumps(
        [{"id": str(i), "hash": h, "scheme": s, "expires_at": e} for i, h, s, e in secrets], separators=(",", ":")
    )


@given(SECRETS)
def test_the_secrets_template_writes_what_json_dumps_writes(secrets) -> None:
    assert _secrets_json(secrets) == _dumped(secrets)


@given(st.uuids())
def test_a_tombstone_holds_the_derived_secret_id_and_no_hash(credential_id: uuid.UUID) -> None:
    entry = tombstone("A@Example.com", credential_id, uuid.uuid4(), uuid.uuid4(), 7)
    expected = uuid.uuid5(uuid.UUID("6b1d3c52-8f0e-5a7b-9c4d-2e1f0a9b8c7d"), f"{credential_id}:initial")
    assert entry.secrets == _dumped([(expected, TOMBSTONE_HASH, "sha256", None)])
    assert entry.username == "a@example.com"
