"""Event signing keys for local runs (`make dev`, the tests, the benchmarks): made fresh at every start.

The API refuses to publish and the projector refuses to consume without them (taifa_events.signing);
a local key is random, lives only in the environment of the processes started, and is never written
into the repository.
"""

from __future__ import annotations

import secrets


def event_signing_env(key_id: str = "local") -> dict[str, str]:
    """The two TAIFA_* settings of one new 256-bit signing key, active."""
    return {"TAIFA_EVENT_SIGNING_KEYS": f"{key_id}:{secrets.token_hex(32)}", "TAIFA_EVENT_SIGNING_KEY_ID": key_id}
