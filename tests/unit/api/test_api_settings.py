"""Settings the API refuses at start-up rather than misbehave with later."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from taifa_api.settings import Settings
from taifa_events import auth_cache


def test_the_projection_wait_cannot_outlast_the_applied_signals_key() -> None:
    """The API checks the key only at the start of its wait; a wait longer than the key's TTL could miss it."""
    assert Settings(api_projection_wait_seconds=auth_cache.APPLIED_TTL_SECONDS).api_projection_wait_seconds == 60
    with pytest.raises(ValidationError, match="api_projection_wait_seconds"):
        Settings(api_projection_wait_seconds=auth_cache.APPLIED_TTL_SECONDS + 1)
    with pytest.raises(ValidationError, match="api_projection_wait_seconds"):
        Settings(api_projection_wait_seconds=-1)
