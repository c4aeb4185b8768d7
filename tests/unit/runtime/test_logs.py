"""Every service logs one JSON object per line: the same keys, the `extra=` fields, never what was not passed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from taifa_runtime.logs import configure_logging


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """configure_logging changes process-wide logging: give it a buffer and put everything back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging._srcfile, logging.logThreads, logging.logProcesses)
    quieted = ("mail.log", "aiokafka", "httpx", "httpcore")
    saved_quiet = {name: logging.getLogger(name).level for name in quieted}
    buffer = io.StringIO()
    try:
        yield buffer
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        logging._srcfile, logging.logThreads, logging.logProcesses = saved[2], saved[3], saved[4]
        logging.logMultiprocessing = True
        for name, level in saved_quiet.items():
            logging.getLogger(name).setLevel(level)


def _records(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_record_is_one_json_line_with_service_level_logger_message_and_its_extra_fields(lines) -> None:
    configure_logging("relay", "info", stream=lines)
    logging.getLogger("taifa_relay.session").info("relayed %s", "ok", extra={"recipients": 2, "tls": True})

    [record] = _records(lines)
    assert record["service"] == "relay"
    assert record["level"] == "info"
    assert record["logger"] == "taifa_relay.session"
    assert record["message"] == "relayed ok"
    assert record["recipients"] == 2 and record["tls"] is True
    assert record["time"].endswith("Z") and len(record["time"]) == len("2026-01-01T00:00:00.000Z")


def test_nothing_but_the_named_fields_is_collected_from_the_record(lines) -> None:
    configure_logging("api", "info", stream=lines)
    logging.getLogger("x").info("hello")

    [record] = _records(lines)
    assert set(record) == {"time", "level", "service", "logger", "message"}


def test_a_secret_passed_as_a_pydantic_secret_stays_masked(lines) -> None:
    configure_logging("api", "info", stream=lines)
    logging.getLogger("x").warning("settings", extra={"password": SecretStr("hunter2-very-secret")})

    assert "hunter2-very-secret" not in lines.getvalue()
    assert _records(lines)[0]["password"] == "**********"


def test_an_exception_carries_its_class_and_traceback(lines) -> None:
    configure_logging("projector", "info", stream=lines)
    try:
        raise ConnectionResetError("peer went away")
    except ConnectionResetError:
        logging.getLogger("x").exception("batch failed")

    [record] = _records(lines)
    assert record["error"] == "ConnectionResetError"
    assert "peer went away" in record["traceback"]


def test_an_explicit_error_field_wins_over_the_exception_class(lines) -> None:
    configure_logging("relay", "info", stream=lines)
    try:
        raise OSError("x")
    except OSError:
        logging.getLogger("x").warning("lost", exc_info=True, extra={"error": "RedisTimeout"})

    assert _records(lines)[0]["error"] == "RedisTimeout"


def test_level_and_quiet_loggers_filter_records(lines) -> None:
    configure_logging("relay", "WARNING", quiet=["mail.log"], stream=lines)
    logging.getLogger("x").info("dropped")
    logging.getLogger("x").warning("kept")
    configure_logging("relay", "debug", quiet=["mail.log"], stream=lines)
    logging.getLogger("mail.log").info("client said AUTH PLAIN dGVzdA==")

    assert [r["message"] for r in _records(lines)] == ["kept"]


def test_libraries_that_log_payloads_are_kept_to_warnings_even_at_debug(lines) -> None:
    configure_logging("credential-api", "debug", stream=lines)
    logging.getLogger("aiokafka.producer.producer").debug("Sending (value=b'{\"secret_hash\": \"ab12\"}')")
    logging.getLogger("aiokafka.conn").debug("SaslAuthenticateRequest_v1(sasl_auth_bytes=b'\\x00u\\x00pw')")
    logging.getLogger("httpx").info("HTTP Request: POST https://hooks.example/t/SECRET-TOKEN")
    logging.getLogger("taifa_api").debug("ours")
    logging.getLogger("aiokafka").warning("broker unavailable")

    assert [r["message"] for r in _records(lines)] == ["ours", "broker unavailable"]


def test_configuring_twice_does_not_double_lines(lines) -> None:
    configure_logging("projector", "info", stream=lines)
    configure_logging("projector", "info", stream=lines)
    logging.getLogger("x").info("once")

    assert len(_records(lines)) == 1
