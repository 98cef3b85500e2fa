"""The UDP listeners' batches over real loopback sockets: the pure-Python ``Datagrams`` in
every build, and the compiled ``mmsg.Batch`` (recvmmsg/sendmmsg) in ``make test-compiled``,
which fails before the tests run if mmsg.pyx was not built (build_ext.not_compiled)."""

from __future__ import annotations

import errno
import importlib.util
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from bridge import const
from bridge.dnsfront import udpio

COMPILED = importlib.util.find_spec("bridge.dnsfront.mmsg") is not None
KINDS: list[Any] = [udpio.Datagrams]
if COMPILED:
    from bridge.dnsfront import mmsg

    KINDS.append(mmsg.Batch)

FAMILIES = [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]


@pytest.fixture(params=FAMILIES, ids=["ipv4", "ipv6"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    """A non-blocking server socket and three clients, on one loopback family."""
    fam, host = request.param
    server = socket.socket(fam, socket.SOCK_DGRAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    server.bind((host, 0))
    server.setblocking(False)
    clients = []
    for _ in range(3):
        c = socket.socket(fam, socket.SOCK_DGRAM)
        c.bind((host, 0))
        c.settimeout(2.0)
        clients.append(c)
    yield server, clients
    for s in (server, *clients):
        s.close()


def receive_all(batch: Any, sock: socket.socket, want: int) -> list[tuple[bytes, Any]]:
    """Every datagram as (bytes, sender), one ``recv`` per call until ``want`` arrived (the
    kernel has them all once the clients' sendto returned: loopback delivers synchronously)."""
    got: list[tuple[bytes, Any]] = []
    for _ in range(want):  # bounded: each round takes at least one
        datagrams = batch.recv(sock)
        assert datagrams, f"only {len(got)} of {want} datagrams received"
        assert len(datagrams) <= batch.capacity
        got += [(d, batch.addr(i)) for i, d in enumerate(datagrams)]
        if len(got) >= want:
            break
    return got


@pytest.mark.parametrize("kind", KINDS)
def test_a_burst_is_received_whole_and_each_reply_reaches_its_sender(
    kind: Any, pair: tuple[socket.socket, list[socket.socket]]
) -> None:
    server, clients = pair
    batch = kind(16, 512)
    assert batch.recv(server) == []  # nothing waiting: EAGAIN is an empty batch
    n = 150  # more than nine batches of 16
    for i in range(n):
        clients[i % 3].sendto(b"q%d" % i, server.getsockname())
    sent_from = {c.getsockname()[:2]: c for c in clients}
    answered: dict[socket.socket, list[bytes]] = {c: [] for c in clients}
    total = 0
    while total < n:
        datagrams = batch.recv(server)
        assert datagrams and len(datagrams) <= 16
        for i, data in enumerate(datagrams):
            addr = batch.addr(i)
            assert batch.host(i) == addr[0]
            assert addr[:2] in sent_from  # as recvfrom gives it: (host, port[, flow, scope])
            assert len(addr) == (4 if server.family == socket.AF_INET6 else 2)
            batch.reply(i, b"r" + data)
            answered[sent_from[addr[:2]]].append(b"r" + data)
        assert batch.flush(server) == []
        total += len(datagrams)
    assert batch.recv(server) == []
    for client, replies in answered.items():
        assert [client.recv(64) for _ in replies] == replies  # every one, in order
    assert sorted(len(r) for r in answered.values()) == [50, 50, 50]


@pytest.mark.parametrize("kind", KINDS)
def test_each_sender_is_named_as_recvfrom_names_it_when_senders_alternate(kind: Any) -> None:
    """The compiled batch keeps the last sender's text and formats IPv4 itself: senders that
    alternate, and octets of one, two and three digits, each get their own text."""
    hosts = ["127.0.0.1", "127.10.200.5", "127.0.0.1", "127.255.0.99", "127.255.0.9"]
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    clients = []
    try:
        for host in dict.fromkeys(hosts):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            clients.append(c)
            c.bind((host, 0))
        by_host = {c.getsockname()[0]: c for c in clients}
        for host in hosts:
            by_host[host].sendto(host.encode(), server.getsockname())
        batch = kind(16, 512)
        got = receive_all(batch, server, len(hosts))
        assert [addr[0] for _, addr in got] == hosts
        assert [batch.host(i) for i in range(len(hosts))] == hosts
        assert [data.decode() for data, _ in got] == hosts
    finally:
        for s in (server, *clients):
            s.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_reply_that_cannot_be_sent_is_reported_and_the_rest_still_go(
    kind: Any, pair: tuple[socket.socket, list[socket.socket]]
) -> None:
    """sendmmsg stops at a message the kernel refuses (here EMSGSIZE: over 65,507 bytes) and
    reports only the ones before it: the batch sends the rest in a second call."""
    server, (client, *_) = pair
    batch = kind(8, 512)
    for i in range(8):
        client.sendto(b"q%d" % i, server.getsockname())
    datagrams = receive_all(batch, server, 8)
    assert len(datagrams) == 8
    for i, (data, _) in enumerate(datagrams):
        batch.reply(i, b"x" * 70_000 if i in (0, 3) else b"r" + data)
    assert batch.flush(server) == [(0, errno.EMSGSIZE), (3, errno.EMSGSIZE)]
    assert [client.recv(64) for _ in range(6)] == [b"rq%d" % i for i in (1, 2, 4, 5, 6, 7)]
    assert batch.flush(server) == []  # flushed: nothing is sent twice
    client.settimeout(0.05)
    with pytest.raises(TimeoutError):
        client.recv(64)


@pytest.mark.parametrize("kind", KINDS)
def test_a_long_datagram_is_cut_as_recvfrom_cuts_it_and_only_the_batch_is_answered(
    kind: Any, pair: tuple[socket.socket, list[socket.socket]]
) -> None:
    server, (client, *_) = pair
    batch = kind(4, 100)
    client.sendto(b"a" * 300, server.getsockname())
    client.sendto(b"b" * 10, server.getsockname())
    assert [d for d, _ in receive_all(batch, server, 2)] == [b"a" * 100, b"b" * 10]
    with pytest.raises(IndexError):
        batch.reply(2, b"r")
    with pytest.raises(IndexError):
        batch.host(2)


def test_the_compiled_build_batches_and_the_pure_one_does_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The choice is made once, when the server starts, and logged."""
    with caplog.at_level(logging.INFO, logger="bridge.dnsfront.udpio"):
        batch = udpio.make_batch(const.DNS_UDP_DRAIN_BATCH, const.DNS_MAX_UDP_PAYLOAD)
    assert batch.capacity == const.DNS_UDP_DRAIN_BATCH
    if COMPILED:
        assert isinstance(batch, mmsg.Batch)
        assert "recvmmsg/sendmmsg" in caplog.text
    else:
        assert isinstance(batch, udpio.Datagrams)
        assert "recvfrom/sendto" in caplog.text
