"""What msgspec would save on the envelope's decode (issue 18 asked to measure it): figures, never assertions.

    pip install --target /tmp/msgspec msgspec==0.22.0      # not a dependency of the project: this comparison only
    PYTHONPATH=/tmp/msgspec .venv/bin/python bench/projector/bench_decode.py [--events 20000] [--rounds 3]

Over the projector bench's workload (`workload.generate`: CredentialCreated, CredentialDeactivated, DomainRegistered,
DomainVerified, with the envelope metadata), per event, medians of `--rounds`:
1. `taifa_events.decode` with the Kafka headers' (type, version), as the projector calls it: the pydantic models
   the fold, the audit feed and the cache entries read;
2. msgspec into Structs that mirror those four data classes, the envelope and its metadata (types, lengths, the
   secret hash's pattern, the always-absent plaintext fields; not `source_ip`'s normalisation, a Python validator):
   the best case of a second copy of the schema, whose output every consumer would have to read instead;
3. msgspec, then the same pydantic models built from its output without validation (`model_construct`): the
   models the rest of the projector reads, from the faster parser.
Every record is checked to decode to the same field values both ways before anything is timed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from taifa_events import decode
from taifa_events.envelope import Envelope
from taifa_events.events import (
    SECRET_HASH_PATTERN,
    CredentialCreated,
    CredentialDeactivated,
    DomainRegistered,
    DomainVerified,
)
from taifa_events.metadata import Actor as ActorModel
from taifa_events.metadata import EventMetadata
from taifa_events.secrets import initial_secret_id

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import generate  # the bench's own module, beside this file

try:
    import msgspec
    from msgspec import Meta, Struct
except ImportError:  # pragma: no cover - a measurement tool
    sys.exit(f"msgspec is not installed; see the usage in {Path(__file__).name}'s docstring")

Aware = Annotated[datetime.datetime, Meta(tz=True)]
Username = Annotated[str, Meta(min_length=3, max_length=320)]


class Actor(Struct, frozen=True, gc=False):
    type: Literal["api_key", "session", "operator", "system", "unknown"]
    id: Annotated[str, Meta(max_length=200)] | None = None


class Metadata(Struct, frozen=True, gc=False):
    actor: Actor
    source_ip: Annotated[str, Meta(max_length=64)] | None = None
    request_id: Annotated[str, Meta(max_length=200)] | None = None


class Data(Struct, frozen=True, gc=False, kw_only=True):
    # The plaintext fields `EventData` refuses: only null (absent) passes.
    password: None = None
    secret: None = None
    api_key: None = None
    plaintext: None = None
    token: None = None


class Created(Data, frozen=True, gc=False, kw_only=True):
    credential_id: uuid.UUID
    account_id: uuid.UUID
    domain_id: uuid.UUID
    username: Username
    domain: str
    secret_hash: Annotated[str, Meta(pattern=SECRET_HASH_PATTERN)]
    hash_scheme: Literal["sha256"] = "sha256"
    created_at: Aware
    secret_id: uuid.UUID | None = None


class Deactivated(Data, frozen=True, gc=False, kw_only=True):
    credential_id: uuid.UUID
    account_id: uuid.UUID
    domain_id: uuid.UUID
    username: Username
    deactivated_at: Aware


class Registered(Data, frozen=True, gc=False, kw_only=True):
    domain_id: uuid.UUID
    account_id: uuid.UUID
    name: Annotated[str, Meta(min_length=1, max_length=253)]
    verification_name: str
    verification_value: str
    created_at: Aware


class Verified(Data, frozen=True, gc=False, kw_only=True):
    domain_id: uuid.UUID
    account_id: uuid.UUID
    name: str
    verified_at: Aware
    method: Literal["dns", "operator"] = "dns"


def _envelope_decoder(data: type[Data]) -> msgspec.json.Decoder[Any]:
    envelope = msgspec.defstruct(
        "Envelope",
        [
            ("event_id", uuid.UUID),
            ("event_type", str),
            ("schema_version", Annotated[int, Meta(ge=1)]),
            ("stream_id", uuid.UUID),
            ("stream_version", Annotated[int, Meta(ge=1)]),
            ("position", Annotated[int, Meta(ge=1)]),
            ("occurred_at", Aware),
            ("correlation_id", Annotated[str, Meta(max_length=200)]),
            ("data", data),
            ("metadata", Metadata | None, None),
        ],
        frozen=True,
        gc=False,
    )
    return msgspec.json.Decoder(envelope)


MIRRORS: dict[str, tuple[type[Any], msgspec.json.Decoder[Any]]] = {
    "CredentialCreated": (CredentialCreated, _envelope_decoder(Created)),
    "CredentialDeactivated": (CredentialDeactivated, _envelope_decoder(Deactivated)),
    "DomainRegistered": (DomainRegistered, _envelope_decoder(Registered)),
    "DomainVerified": (DomainVerified, _envelope_decoder(Verified)),
}
ENVELOPES = {name: Envelope[model] for name, (model, _) in MIRRORS.items()}  # type: ignore[valid-type]
_PLAINTEXT = frozenset(Data.__struct_fields__)


def mirror_decode(raw: bytes, declared: tuple[str, int]) -> Any:
    """msgspec's read, completed as the pydantic path completes it: an older CredentialCreated (v1/v2, the
    workload has them) gets its derived `secret_id` and the current schema version (`upcasters.BY_DEFAULTS`)."""
    envelope = MIRRORS[declared[0]][1].decode(raw)
    data = envelope.data
    if type(data) is Created and data.secret_id is None:
        data = msgspec.structs.replace(data, secret_id=initial_secret_id(data.credential_id))
        envelope = msgspec.structs.replace(envelope, data=data, schema_version=CredentialCreated.SCHEMA_VERSION)
    return envelope


def to_models(struct: Any, event_type: str) -> Any:
    """The pydantic envelope, data and metadata built from msgspec's output without validating again."""
    data = struct.data
    fields = {name: getattr(data, name) for name in data.__struct_fields__ if name not in _PLAINTEXT}
    metadata = struct.metadata
    meta = None
    if metadata is not None:
        actor = ActorModel.model_construct(type=metadata.actor.type, id=metadata.actor.id)
        meta = EventMetadata.model_construct(actor=actor, source_ip=metadata.source_ip, request_id=metadata.request_id)
    return ENVELOPES[event_type].model_construct(
        event_id=struct.event_id, event_type=struct.event_type, schema_version=struct.schema_version,
        stream_id=struct.stream_id, stream_version=struct.stream_version, position=struct.position,
        occurred_at=struct.occurred_at, correlation_id=struct.correlation_id,
        data=MIRRORS[event_type][0].model_construct(**fields), metadata=meta,
    )  # fmt: skip


def _same(model: Any, struct: Any) -> bool:
    data_fields = [n for n in struct.data.__struct_fields__ if n not in _PLAINTEXT]
    envelope_fields = ("event_id", "event_type", "schema_version", "stream_id", "position", "occurred_at")
    return all(getattr(model, n) == getattr(struct, n) for n in envelope_fields) and all(
        getattr(model.data, n) == getattr(struct.data, n) for n in data_fields
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    records = [(json.dumps(e).encode(), (e["event_type"], e["schema_version"])) for e in generate(args.events)]
    for raw, declared in records:
        if not _same(decode(raw, declared=declared), mirror_decode(raw, declared)):
            sys.exit(f"the mirror read {raw!r} differently")
    ways: dict[str, Callable[[bytes, tuple[str, int]], Any]] = {
        "taifa_events.decode (pydantic)": lambda raw, declared: decode(raw, declared=declared),
        "msgspec Structs (a second schema)": mirror_decode,
        "msgspec, then the pydantic models": lambda raw, declared: to_models(mirror_decode(raw, declared), declared[0]),
    }
    timings: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, way in ways.items():
            began = time.perf_counter()
            for raw, declared in records:
                way(raw, declared)
            timings[name].append(1e6 * (time.perf_counter() - began) / len(records))
    print(f"decode of {len(records):,} envelopes of the projector bench, medians of {args.rounds} rounds:")
    for name, values in timings.items():
        print(f"  {name:36s} {statistics.median(values):6.2f} us/event")


if __name__ == "__main__":
    main()
