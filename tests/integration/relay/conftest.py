"""Fixtures of the relay integration tests (defined in support.py and fake_upstream.py)."""

from tests.integration.relay.fake_upstream import scripted  # noqa: F401 - fixtures are found by name
from tests.integration.relay.support import (  # noqa: F401 - fixtures are found by name
    certs,
    client,
    credentials,
    make_relay,
    rdb,
    relay_redis_url,
    shared_relay,
    sink,
)
