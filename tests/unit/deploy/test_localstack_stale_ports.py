"""stale_ports: the loopback ports a removed container's DNAT rule still takes are found and held for the session
(a CI run failed on a relay the kernel had given such a port: listening, yet refused)."""

from __future__ import annotations

import socket

import pytest
from taifa_localstack.stale_ports import dnat_ports, hold

# `iptables -t nat -S` on the machine where it happened: three rules podman left behind, around its own chains.
IPTABLES = """\
-P PREROUTING ACCEPT
-N NETAVARK-HOSTPORT-DNAT
-A PREROUTING -m addrtype --dst-type LOCAL -j NETAVARK-HOSTPORT-DNAT
-A NETAVARK-DN-1D8721804F16F -s 10.88.0.0/16 -d 127.0.0.1/32 -p tcp -m tcp --dport 43517 -j NETAVARK-HOSTPORT-SETMARK
-A NETAVARK-DN-1D8721804F16F -d 127.0.0.1/32 -p tcp -m tcp --dport 43517 -j DNAT --to-destination 10.88.0.46:6379
-A NETAVARK-DN-1D8721804F16F -d 127.0.0.1/32 -p tcp -m tcp --dport 36879 -j DNAT --to-destination 10.88.0.48:6379
-A NETAVARK-HOSTPORT-DNAT -p tcp -m tcp --dport 41999 -m comment --comment "dnat name: podman" -j NETAVARK-DN-1D87
-A NETAVARK-DN-1D8721804F16F -d 127.0.0.1/32 -p tcp -m tcp --dport 41999 -j DNAT --to-destination 10.88.0.50:6379
-A POSTROUTING -s 10.88.0.0/16 -p tcp -m tcp --dport 5432 -j MASQUERADE
"""

NFT = """\
table inet netavark {
    chain nv_2f259bab_dnat {
        ip daddr 127.0.0.1 tcp dport 40123 dnat ip to 10.88.0.7:5432
        tcp dport 22 accept
    }
}
"""


def test_the_ports_of_dnat_rules_are_found_and_no_other_rules_ports() -> None:
    assert dnat_ports(IPTABLES) == {43517, 36879, 41999}
    assert dnat_ports(NFT) == {40123}
    assert dnat_ports("") == set()


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_held_port_cannot_be_bound_by_anyone_until_it_is_let_go() -> None:
    port = _unused_port()
    held = hold({port})
    assert [sock.getsockname()[1] for sock in held] == [port]
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's and uvloop's servers bind
        with pytest.raises(OSError, match="in use"):
            server.bind(("127.0.0.1", port))
        for sock in held:
            sock.close()
        server.bind(("127.0.0.1", port))


def test_a_port_something_listens_on_is_left_to_it() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        free = _unused_port()
        held = hold({taken, free})
        try:
            assert [sock.getsockname()[1] for sock in held] == [free]
        finally:
            for sock in held:
                sock.close()
