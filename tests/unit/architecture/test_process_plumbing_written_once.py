"""Logging, signals, pauses between rounds and Redis clients are written once, in libs/runtime, not per service.

Each had grown its own copy per service (three log styles, five "sleep unless stopped", four Redis clients with
four timeout choices); a new copy is how they drift apart again.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

COPIES = {
    "taifa_runtime.logs.configure_logging": re.compile(r"logging\.basicConfig\(|class \w*JsonFormatter\b"),
    "taifa_runtime.lifecycle.stop_on_signals": re.compile(r"add_signal_handler\(|signal\.signal\("),
    "taifa_runtime.lifecycle.sleep_unless_stopped": re.compile(r"wait_for\(\s*(?:self\.)?_?stop\w*\.wait\(\)"),
    "taifa_runtime.redis.redis_client": re.compile(r"Redis\.from_url\(|\bRedis\("),
    "taifa_runtime.migrations.Migrations": re.compile(r"command\.upgrade\(|alembic\.config"),
}


def _service_sources() -> list[Path]:
    return sorted(p for p in (REPO / "services").glob("*/src/**/*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("helper", sorted(COPIES))
def test_services_use_the_runtime_helper_instead_of_their_own_copy(helper: str) -> None:
    pattern = COPIES[helper]
    copies = [
        f"{path.relative_to(REPO)}:{number}"
        for path in _service_sources()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not copies, f"use {helper}: {copies}"


@pytest.mark.parametrize(
    ("helper", "line"),
    [
        ("taifa_runtime.logs.configure_logging", 'logging.basicConfig(level="INFO")'),
        ("taifa_runtime.lifecycle.stop_on_signals", "loop.add_signal_handler(sig, stop.set)"),
        ("taifa_runtime.lifecycle.sleep_unless_stopped", "await asyncio.wait_for(self._stop.wait(), 1.0)"),
        ("taifa_runtime.redis.redis_client", "aioredis.Redis.from_url(url, socket_timeout=30)"),
    ],
)
def test_the_patterns_recognise_the_copies_that_were_removed(helper: str, line: str) -> None:
    assert COPIES[helper].search(line)
