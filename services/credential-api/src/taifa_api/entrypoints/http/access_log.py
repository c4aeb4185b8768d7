"""uvicorn's access log without the one-time tokens a request line may carry.

The development console's sign-in link (`/console/dev/sign-in?token=...`) holds a token that signs in once, and
uvicorn's access line holds each request's path with its query string: whoever read the log first could sign in
as the account. Every `token` query value is replaced before the line is written.
"""

from __future__ import annotations

import logging
import re
from typing import Final

ACCESS_LOGGER: Final = "uvicorn.access"
_TOKEN: Final = re.compile(r"(?i)((?:^|[?&])token=)[^&#\s]*")
REDACTED: Final = "[redacted]"


class RedactTokens(logging.Filter):
    """Replaces `token=<value>` in the access line's arguments (uvicorn passes the path as one of them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN.sub(rf"\g<1>{REDACTED}", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def redact_tokens() -> None:
    """Install the filter on uvicorn's access logger (once)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())
