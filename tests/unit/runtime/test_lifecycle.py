"""Stopping a service: signals set one event, and waits between rounds end as soon as it is set."""

from __future__ import annotations

import asyncio
import os
import signal

from taifa_runtime.lifecycle import on_stop_signals, sleep_unless_stopped, stop_on_signals


async def test_sleep_returns_false_when_the_pause_ends_without_a_stop() -> None:
    assert await sleep_unless_stopped(asyncio.Event(), 0.01) is False


async def test_sleep_returns_true_at_once_when_already_stopped() -> None:
    stop = asyncio.Event()
    stop.set()
    # A generous pause that the test would hit its timeout on, were it not cut short.
    assert await asyncio.wait_for(sleep_unless_stopped(stop, 3600), 5) is True


async def test_sleep_ends_when_the_stop_is_set_meanwhile() -> None:
    stop = asyncio.Event()
    sleeper = asyncio.create_task(sleep_unless_stopped(stop, 3600))
    await asyncio.sleep(0)
    stop.set()
    assert await asyncio.wait_for(sleeper, 5) is True


async def test_sigterm_and_sigint_set_the_stop_event() -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        stop = asyncio.Event()
        stop_on_signals(stop)
        try:
            os.kill(os.getpid(), sig)
            await asyncio.wait_for(stop.wait(), 5)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            loop.remove_signal_handler(signal.SIGINT)
        assert stop.is_set()


def test_a_process_without_a_loop_gets_its_handler_called_with_the_signal() -> None:
    received: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        on_stop_signals(received.append)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert received == [signal.SIGTERM, signal.SIGINT]
