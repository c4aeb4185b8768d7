"""`taifa-relay run`: start the relay with settings from TAIFA_* variables (on uvloop)."""

from __future__ import annotations

import typer
from taifa_runtime import loop as runtime_loop
from taifa_runtime.logs import configure_logging

from taifa_relay.settings import Settings

app = typer.Typer(add_completion=False, help="Taifa Mail SMTP submission relay.")


@app.command()
def run() -> None:
    """Serve SMTP on the submission and implicit-TLS ports until SIGTERM, then drain."""
    from taifa_relay.entrypoints.server import Relay

    settings = Settings()
    # aiosmtpd's own logger echoes client lines at INFO/DEBUG: kept to warnings.
    configure_logging("relay", settings.relay_log_level, quiet=("mail.log",))

    async def main() -> None:
        await Relay.from_settings(settings).serve_until_signalled()

    runtime_loop.run(main())


@app.command()
def settings() -> None:
    """Print every setting with its description (no values)."""
    for name, field in Settings.model_fields.items():
        typer.echo(f"TAIFA_{name.upper()}\t{field.description}")


if __name__ == "__main__":
    app()
