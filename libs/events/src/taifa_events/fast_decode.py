"""The fast path of `taifa_events.decode`: one pydantic-core pass over the JSON bytes (issue 18).

`decode` tries `decode_fast` first. It returns None for anything it does not read in that one pass (an unknown
type, an upcaster that rewrites the data, invalid input, not JSON), and `decode` then reads the record the careful
way (`envelope._decode_carefully`: JSON, the header, upcasting, the data, the envelope, each refusal with its
reason). So whatever the fast path accepts, the careful path accepts as an equal envelope, and every refusal and
its reason come from the careful path: tests/unit/events/test_fast_decode.py checks both on the same inputs.

What the fast path reads:
- an envelope of a known type at its current schema version: `Envelope[<data class>]` validated from the bytes
  (`model_validate_json`), the optional `metadata` included (it is a field of the envelope);
- an envelope of an older version whose every upcasting step is one the current data class's defaults make
  (`upcasters.BY_DEFAULTS`: CredentialCreated v1 and v2, which lack `hash_scheme` and `secret_id`), validated the
  same way and then given the current version, as the careful path gives it. Older events stay in the event store
  for good, so a rebuild meets them for ever: read the careful way they cost twice a current one.

pydantic's `TypeAdapter(...).validate_json` runs the same core validator as `model_validate_json` (measured
equal); msgspec would parse faster but needs a second copy of every schema and validator (patterns, the plaintext
refusal, metadata's address normalisation) and pydantic models built from its output, which is where the time goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from taifa_events.events import EVENT_TYPES
from taifa_events.upcasters import BY_DEFAULTS


class _Header(BaseModel):
    """The two envelope fields that choose how the rest is read (strict: as `decode` checks them)."""

    model_config = ConfigDict(extra="ignore", cache_strings="keys")  # as `Envelope`'s

    event_type: StrictStr
    schema_version: StrictInt


def _oldest_by_defaults(event_type: str, current: int) -> int:
    """The oldest schema version from which every upcasting step up to `current` is made by the defaults."""
    oldest = current
    while (event_type, oldest - 1) in BY_DEFAULTS:
        oldest -= 1
    return oldest


class FastDecoder:
    """`decode_fast` over the envelope parametrised with each data class (`envelope.py` builds it with
    `Envelope[<data class>]`; this module does not import the envelope, which imports it)."""

    def __init__(self, typed_envelopes: Mapping[str, type[BaseModel]]) -> None:
        # event_type -> (the typed envelope, the current schema version, the oldest version read here).
        self._typed = {
            name: (typed_envelopes[name], cls.SCHEMA_VERSION, _oldest_by_defaults(name, cls.SCHEMA_VERSION))
            for name, cls in EVENT_TYPES.items()
        }

    def decode_fast(self, raw: bytes | str | dict[str, Any], declared: tuple[str, int] | None = None) -> Any:
        """The envelope in `raw` read in one pass, or None when the careful path must decide.

        `declared` (from the Kafka headers) saves parsing the header fields first; the envelope read with it must
        carry the same type and version, or the careful path decides.
        """
        try:
            if isinstance(raw, dict):
                event_type, version = raw.get("event_type"), raw.get("schema_version")
                if not isinstance(event_type, str) or type(version) is not int or not isinstance(raw.get("data"), dict):
                    return None
            elif declared is not None:
                event_type, version = declared
            else:
                header = _Header.model_validate_json(raw)
                event_type, version = header.event_type, header.schema_version
            typed = self._typed.get(event_type)
            if typed is None:
                return None
            model, current, oldest = typed
            if not oldest <= version <= current:
                return None
            envelope: Any = model.model_validate(raw) if isinstance(raw, dict) else model.model_validate_json(raw)
            if (envelope.event_type, envelope.schema_version) != (event_type, version):
                return None  # the headers named another type or version than the value has
            if version != current:
                # The defaults made the upcasters' fields; the envelope says the version its data now has. Set in
                # place: the envelope was just built and nothing else holds it (`model_copy` would copy it whole).
                object.__setattr__(envelope, "schema_version", current)
            return envelope
        except ValidationError:
            return None
