"""`taifa-relay run`: start the relay with settings from TAIFA_* variables (on uvloop)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import typer
from taifa_runtime import loop as runtime_loop

from taifa_relay.settings import Settings

app = typer.Typer(add_completion=False, help="Taifa Mail SMTP submission relay.")

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; only the fields code passes in `extra` (never AUTH arguments)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["error"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiosmtpd's own logger echoes client lines at INFO/DEBUG; keep it to warnings.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # Records carry only what the JSON above prints: skip the caller lookup (a stack walk per record) and the
    # thread/process fields, about a quarter of the cost of the two lines a relayed message logs.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


@app.command()
def run() -> None:
    """Serve SMTP on the submission and implicit-TLS ports until SIGTERM, then drain."""
    from taifa_relay.entrypoints.server import Relay

    settings = Settings()
    configure_logging(settings.relay_log_level)

    async def main() -> None:
        await Relay(settings).serve_until_signalled()

    runtime_loop.run(main())


@app.command()
def settings() -> None:
    """Print every setting with its description (no values)."""
    for name, field in Settings.model_fields.items():
        typer.echo(f"TAIFA_{name.upper()}\t{field.description}")


if __name__ == "__main__":
    app()
