"""free_port(): the loopback ports the test services and containers are given stay out of the kernel's ephemeral
range, where podman picks random host ports and where a DNAT rule a removed container left behind would take a
later listener's connections (a CI run once lost a Redis that way: listening, yet refused for a minute)."""

from __future__ import annotations

import socket

import pytest
from taifa_localstack import process
from taifa_localstack.process import free_port


def test_ports_are_below_the_ephemeral_range_unique_and_bindable() -> None:
    low, _ = process._ephemeral_range()
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(process._LOWEST_PORT <= port < low for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))


def test_a_port_something_listens_on_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        # The only candidate left is the port in use: free_port() refuses rather than hand it out.
        monkeypatch.setattr(process, "_LOWEST_PORT", taken)
        monkeypatch.setattr(process, "_ephemeral_range", lambda: (taken + 1000, 60999))
        monkeypatch.setattr(process, "_handed_out", set(range(taken + 1, taken + 1000)))
        with pytest.raises(process.ServiceFailed, match="no free TCP port"):
            free_port()


def test_when_every_candidate_is_taken_the_error_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "_ephemeral_range", lambda: (process._LOWEST_PORT + 1000, 60999))
    monkeypatch.setattr(process, "_handed_out", set(range(process._LOWEST_PORT, process._LOWEST_PORT + 1000)))
    with pytest.raises(process.ServiceFailed, match="no free TCP port"):
        free_port()
