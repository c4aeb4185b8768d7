"""The event loop every long-running service runs on: uvloop (a pinned dependency, not an optional extra).

Measured on the projector (`make bench-projector`, 2 processes): about a tenth less CPU per event than the
standard asyncio loop; the relay's STARTTLS goes through uvloop's native TLS.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a new uvloop event loop (as `asyncio.run` does on the default one)."""
    return uvloop.run(main)
