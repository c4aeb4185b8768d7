"""`taifa-stack`: run the local infrastructure in the foreground until Ctrl-C (`make stack`)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from taifa_localstack.stack import Stack

app = typer.Typer(add_completion=False, help="Local PostgreSQL, Redis and Kafka-protocol broker, no Docker.")


@app.command()
def run(
    workdir: Annotated[Path | None, typer.Option(help="Where data and logs go (default: a new temp dir).")] = None,
) -> None:
    """Start the infrastructure, print its URLs, stop everything on Ctrl-C or SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stack = Stack(workdir)
    typer.echo("starting PostgreSQL, Redis, Tansu ...")
    with stack:
        for key, value in stack.env().items():
            typer.echo(f"{key}={value}")
        typer.echo(f"logs in {stack.workdir}; Ctrl-C stops everything")
        stop.wait()
        typer.echo("stopping ...")
    typer.echo("stopped")
