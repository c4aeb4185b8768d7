"""One log style for every service: one JSON object per line on stderr, for the log pipeline to parse.

Built on python-json-logger. A record carries the time (UTC, ISO 8601 with milliseconds), the level, the
service, the logger, the message and exactly the fields the code passes in `extra=`; nothing else is
collected from the caller, so a secret reaches a log only if code hands it over explicitly (values that are
not JSON types are written with `str()`, which keeps pydantic's `SecretStr` masked).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

# The LogRecord attributes a line shows, under the names the services' logs have always used.
_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
_RENAMED = {"asctime": "time", "levelname": "level", "name": "logger", "exc_info": "traceback"}


class ServiceJsonFormatter(JsonFormatter):
    """`{"time", "level", "service", "logger", "message", ...extra, "error", "traceback"}` per record."""

    def __init__(self, service: str) -> None:
        super().__init__(_FIELDS, rename_fields=_RENAMED, static_fields={"service": service}, json_default=str)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """UTC with milliseconds and the zone written out: lines from several hosts sort and compare as text."""
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["level"] = record.levelname.lower()
        if record.exc_info and record.exc_info[0] is not None:
            # The exception's class, to group on without parsing the traceback (an explicit extra wins).
            log_data.setdefault("error", record.exc_info[0].__name__)


# Libraries whose INFO/DEBUG lines carry what must never reach a log, kept to warnings in every service at every
# level: aiokafka prints each produced record's value (an event's secret hash) and its SASL request (the broker
# password) at DEBUG; httpx and httpcore print each request's URL (a webhook URL may hold a token) at INFO.
ALWAYS_QUIET = ("aiokafka", "httpx", "httpcore")


def configure_logging(service: str, level: str, *, quiet: Iterable[str] = (), stream: TextIO | None = None) -> None:
    """Send every record of the process (the root logger) as JSON to `stream` (stderr), at `level` and above.

    `quiet` names more third-party loggers kept to warnings, beside `ALWAYS_QUIET` (aiosmtpd's `mail.log` echoes
    client lines at INFO).
    Replaces the root logger's handlers, so calling it again (a CLI subcommand after `run`) does not double
    lines.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(ServiceJsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in (*ALWAYS_QUIET, *quiet):
        logging.getLogger(name).setLevel(logging.WARNING)
    # A line shows none of the caller's file, function, thread or process: skip collecting them (a stack walk
    # per record is about a quarter of the cost of the two lines the relay logs per message).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
