"""The interface list from rtnetlink (bridge/interfaces.py) against iproute2's reading of the
same kernel, and the dump parser on the kernel's error and on a broken dump.
tests/integration/test_interfaces_lab.py does the same in a namespace with many addresses."""

from __future__ import annotations

import socket
import struct

import pytest

from bridge.interfaces import list_interfaces, parse_addresses
from tests.support.ipaddrs import ip_addresses


def test_the_interfaces_and_addresses_are_the_ones_iproute2_reads() -> None:
    ours = {i.name: (i.index, sorted(str(a) for a in i.addresses)) for i in list_interfaces()}
    theirs = {name: (index, sorted(a)) for name, (index, a) in ip_addresses().items()}
    assert ours == theirs
    assert ours  # loopback at least


def _msg(kind: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 1, 0) + body


def _attr(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def test_a_peer_address_is_the_local_one_and_a_label_names_the_interface() -> None:
    # RTM_NEWADDR (20): 10.9.0.1 peer 10.9.0.2/32 on index 7, labelled ppp0:1
    ifa = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, 7)
    attrs = _attr(1, bytes([10, 9, 0, 2])) + _attr(2, bytes([10, 9, 0, 1])) + _attr(3, b"ppp0:1\0")
    v6 = struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 0, 3) + _attr(1, bytes(15) + b"\1")
    done = _msg(3, struct.pack("=i", 0))
    got = parse_addresses(_msg(20, ifa + attrs) + _msg(20, v6) + done)
    assert [(i, label, str(a)) for i, label, a in got] == [
        (7, "ppp0:1", "10.9.0.1/32"),
        (3, None, "::1/64"),
    ]


def test_the_kernels_error_is_raised_and_a_truncated_dump_refused() -> None:
    with pytest.raises(OSError) as err:
        parse_addresses(_msg(2, struct.pack("=i", -1) + bytes(16)))
    assert err.value.errno == 1
    whole = _msg(20, struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 2) + _attr(2, bytes(4)))
    with pytest.raises(ValueError):
        parse_addresses(whole[:-4])
