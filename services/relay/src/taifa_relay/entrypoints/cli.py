"""`taifa-relay run`: start the relay with settings from TAIFA_* variables (on uvloop)."""

from __future__ import annotations

import typer
from taifa_runtime import loop as runtime_loop
from taifa_runtime.logs import configure_logging

from taifa_relay.settings import Settings

app = typer.Typer(add_completion=False, help="Taifa Mail SMTP submission relay.")


@app.command()
def run(
    workers: int | None = typer.Option(
        None, "--workers", min=1, max=64, help="Relay processes sharing the listeners (default: TAIFA_RELAY_WORKERS)."
    ),
) -> None:
    """Serve SMTP on the submission and implicit-TLS ports until SIGTERM, then drain."""
    settings = Settings()
    # aiosmtpd's own logger echoes client lines at INFO/DEBUG: kept to warnings.
    configure_logging("relay", settings.relay_log_level, quiet=("mail.log",))
    count = workers if workers is not None else settings.relay_workers
    if count > 1:
        from taifa_relay.entrypoints.workers import supervise

        raise typer.Exit(supervise(count))
    _serve(settings, reuse_port=False)


@app.command(hidden=True)
def worker(index: int = typer.Option(..., "--index", min=0)) -> None:
    """One of the processes of `run --workers N`: the listeners with SO_REUSEPORT, health port + index."""
    settings = Settings()
    configure_logging("relay", settings.relay_log_level, quiet=("mail.log",))
    settings = settings.model_copy(update={"relay_health_port": settings.relay_health_port + index})
    _serve(settings, reuse_port=True)


def _serve(settings: Settings, *, reuse_port: bool) -> None:
    from taifa_relay.entrypoints.server import Relay

    async def main() -> None:
        await Relay.from_settings(settings, reuse_port=reuse_port).serve_until_signalled()

    runtime_loop.run(main())


@app.command()
def settings() -> None:
    """Print every setting with its description (no values)."""
    for name, field in Settings.model_fields.items():
        typer.echo(f"TAIFA_{name.upper()}\t{field.description}")


if __name__ == "__main__":
    app()
