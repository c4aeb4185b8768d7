"""Loopback ports a removed container still takes, held so that no test server is given one.

Podman publishes a container's port through a DNAT rule, and podman 4.3 sometimes leaves the rule behind when the
container goes (a test run killed halfway): every connection to 127.0.0.1 on that port is then sent to the dead
container's address, refused or never answered, whoever listens on the port. `free_port()` stays below the kernel's
ephemeral range for that reason, but a server that binds port 0 (the relays, fake upstreams and health ports the
tests start) is given an ephemeral port, which can be one of those: a CI run failed on a relay that listened and was
refused. `hold_stale_ports()` binds each such port that nothing holds, for as long as the sockets it returns stay
open, so the kernel hands it to nobody in the meantime.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess

# A DNAT rule on a destination port: iptables-save's `--dport N ... -j DNAT` and nft's `tcp dport N ... dnat to`.
_DNAT_PORT = re.compile(r"dport (\d+)\b[^\n]*?(?:-j DNAT\b|\bdnat\b)")


def dnat_ports(rules: str) -> set[int]:
    """The destination ports of the DNAT rules in `rules` (iptables -S or nft list ruleset output)."""
    return {int(port) for port in _DNAT_PORT.findall(rules)}


def nat_rules() -> str:
    """The NAT rules this machine has, when it lets us read them (root, iptables or nft installed); else ""."""
    if os.geteuid() != 0:
        return ""
    commands = [["iptables", "-w", "5", "-t", "nat", "-S"], ["nft", "list", "ruleset"]]
    outputs = []
    for command in commands:
        if shutil.which(command[0]) is None:
            continue
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if run.returncode == 0:
            outputs.append(run.stdout)
    return "\n".join(outputs)


def hold(ports: set[int]) -> list[socket.socket]:
    """A socket bound to each of `ports` on every address (no SO_REUSEADDR: nothing else can bind it); a port that
    something already holds (a running container's reservation, a listener) is left as it is."""
    held = []
    for port in sorted(ports):
        sock = socket.socket()
        try:
            sock.bind(("0.0.0.0", port))  # bound, never listening: a reservation on every address, not a server
        except OSError:
            sock.close()
            continue
        held.append(sock)
    return held


def hold_stale_ports() -> list[socket.socket]:
    """Hold the ports the machine's DNAT rules send elsewhere and that nothing holds now (see the module's doc)."""
    return hold(dnat_ports(nat_rules()))
