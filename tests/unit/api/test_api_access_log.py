"""uvicorn's access line never holds a one-time sign-in token (the development console's sign-in link)."""

from __future__ import annotations

import io
import logging

from taifa_api.entrypoints.http.access_log import ACCESS_LOGGER, RedactTokens, redact_tokens


def _line(path: str) -> str:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logger = logging.getLogger(ACCESS_LOGGER)
    saved = logger.filters[:], logger.handlers[:], logger.level, logger.propagate
    try:
        logger.handlers[:], logger.propagate = [handler], False
        logger.setLevel(logging.INFO)
        redact_tokens()
        redact_tokens()  # installed once
        assert sum(isinstance(f, RedactTokens) for f in logger.filters) == 1
        # As uvicorn's httptools/h11 protocols log a request.
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "GET", path, "1.1", 200)
    finally:
        logger.filters[:], logger.handlers[:], logger.level, logger.propagate = saved
    return buffer.getvalue()


def test_the_sign_in_token_is_replaced_in_the_access_line() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4In0.c2lnbmF0dXJl"
    line = _line(f"/console/dev/sign-in?token={token}")
    assert token not in line
    assert '"GET /console/dev/sign-in?token=[redacted] HTTP/1.1" 200' in line


def test_other_query_parameters_are_kept_and_a_token_among_them_is_replaced() -> None:
    line = _line("/v1/smtp/credentials?limit=10&TOKEN=abc&cursor=x")
    assert "limit=10&TOKEN=[redacted]&cursor=x" in line
    assert _line("/v1/usage?granularity=day").count("granularity=day") == 1
    assert "not_a_token=keep" in _line("/x?not_a_token=keep")
