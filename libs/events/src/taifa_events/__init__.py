"""Taifa Mail events: schemas, envelope, codec, topics, upcasters and the auth-cache format. No I/O."""

from taifa_events import auth_cache, topics
from taifa_events.envelope import (
    Envelope,
    InvalidEvent,
    declared_type,
    decode,
    encode,
    envelope_to_json,
    kafka_headers,
    make_envelope,
    parse_data,
    rfc3339,
)
from taifa_events.events import (
    EVENT_TYPES,
    AccountCreated,
    ApiKeyIssued,
    ApiKeyRevoked,
    CredentialCreated,
    CredentialDeactivated,
    DomainRegistered,
    DomainReleased,
    DomainVerificationFailed,
    DomainVerified,
    EventData,
)
from taifa_events.secret_hash import HASH_SCHEME, hash_secret, new_secret, secret_matches

__all__ = [
    "EVENT_TYPES",
    "HASH_SCHEME",
    "AccountCreated",
    "ApiKeyIssued",
    "ApiKeyRevoked",
    "CredentialCreated",
    "CredentialDeactivated",
    "DomainRegistered",
    "DomainReleased",
    "DomainVerificationFailed",
    "DomainVerified",
    "Envelope",
    "EventData",
    "InvalidEvent",
    "auth_cache",
    "declared_type",
    "decode",
    "encode",
    "envelope_to_json",
    "hash_secret",
    "kafka_headers",
    "make_envelope",
    "new_secret",
    "parse_data",
    "rfc3339",
    "secret_matches",
    "topics",
]
