"""`taifa-stack`: the local infrastructure (`make stack`) or the whole dev stack (`make dev`), until Ctrl-C."""

from __future__ import annotations

import fcntl
import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from taifa_localstack import banner
from taifa_localstack.devstack import DevPorts, DevStack
from taifa_localstack.process import ServiceFailed
from taifa_localstack.stack import Stack

app = typer.Typer(add_completion=False, help="Local PostgreSQL, Redis and Kafka-protocol broker, no Docker.")


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


@app.command()
def run(
    workdir: Annotated[Path | None, typer.Option(help="Where data and logs go (default: a new temp dir).")] = None,
) -> None:
    """Start only the infrastructure, print its URLs, stop everything on Ctrl-C or SIGTERM."""
    stop = _stop_on_signals()
    stack = Stack(workdir)
    typer.echo("starting PostgreSQL, Redis, Tansu ...")
    with stack:
        for key, value in stack.env().items():
            typer.echo(f"{key}={value}")
        typer.echo(f"logs in {stack.workdir}; Ctrl-C stops everything")
        stop.wait()
        typer.echo("stopping ...")
    typer.echo("stopped")


@app.command()
def dev(
    workdir: Annotated[Path, typer.Option(help="State directory; dev.env is written here.")] = Path(".taifa"),
    free_ports: Annotated[bool, typer.Option(help="Free ports instead of the fixed dev ports (tests).")] = False,
) -> None:
    """The whole stack with a seeded demo account; writes <workdir>/dev.env when ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    lock = open(workdir / "dev.lock", "a+")  # noqa: SIM115 - held for the life of the stack
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        owner = lock.read().strip() or "?"
        typer.echo(f"make dev is already running (pid {owner}); stop it with Ctrl-C first.", err=True)
        raise typer.Exit(1) from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()

    stop = _stop_on_signals()
    stack = DevStack(workdir.resolve(), ports=DevPorts.free() if free_ports else DevPorts())
    typer.echo("Starting the Taifa Mail dev stack (no Docker):")
    try:
        env = stack.start()
    except ServiceFailed as exc:
        typer.echo(f"\nstartup failed; everything started so far was stopped.\n{exc}", err=True)
        raise typer.Exit(1) from None
    try:
        typer.echo(banner.render(env, str(stack.env_file)))
        stop.wait()
    finally:
        typer.echo("stopping ...")
        stack.stop()
        typer.echo("stopped; nothing is left running")


@app.command("settings-doc")
def settings_doc(
    write: Annotated[Path | None, typer.Option(help="Rewrite the generated block in this Markdown file.")] = None,
) -> None:
    """Print (or write into README.md) the table of every TAIFA_* setting, from the settings models."""
    from taifa_localstack import settings_doc as doc

    if write is None:
        typer.echo(doc.render_table())
        return
    typer.echo(f"{write}: {'updated' if doc.write(write) else 'already current'}")
