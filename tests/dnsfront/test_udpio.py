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
        count = batch.recv(sock)
        assert count, f"only {len(got)} of {want} datagrams received"
        assert count <= batch.capacity
        got += [(batch.data(i), batch.addr(i)) for i in range(count)]
        if len(got) >= want:
            break
    return got


@pytest.mark.parametrize("kind", KINDS)
def test_a_burst_is_received_whole_and_each_reply_reaches_its_sender(
    kind: Any, pair: tuple[socket.socket, list[socket.socket]]
) -> None:
    server, clients = pair
    batch = kind(16, 512)
    assert batch.recv(server) == 0  # nothing waiting: EAGAIN is an empty batch
    n = 150  # more than nine batches of 16
    for i in range(n):
        clients[i % 3].sendto(b"q%d" % i, server.getsockname())
    sent_from = {c.getsockname()[:2]: c for c in clients}
    answered: dict[socket.socket, list[bytes]] = {c: [] for c in clients}
    total = 0
    while total < n:
        count = batch.recv(server)
        assert 0 < count <= 16
        for i in range(count):
            data = batch.data(i)
            addr = batch.addr(i)
            assert batch.host(i) == addr[0]
            assert addr[:2] in sent_from  # as recvfrom gives it: (host, port[, flow, scope])
            assert len(addr) == (4 if server.family == socket.AF_INET6 else 2)
            batch.reply(i, b"r" + data)
            answered[sent_from[addr[:2]]].append(b"r" + data)
        assert batch.flush(server) == []
        total += count
    assert batch.recv(server) == 0
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
    with pytest.raises(IndexError):
        batch.data(2)


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


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_of_cached_queries_from_one_sender_is_answered_with_their_own_ids(
    kind: Any,
) -> None:
    """``answer`` takes one sender address's datagrams (any port) while each is a key of a
    fresh entry of the epoch, replies with its own ID and the stored bytes, and stops at the
    first that is not (a miss, an older epoch, a stale entry) or at another sender; the
    replies stay good when the cache drops the entries before they are sent."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    clients = []
    try:
        for host in ("127.0.0.1", "127.0.0.1", "127.0.0.2"):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            clients.append(c)
            c.bind((host, 0))
            c.settimeout(2.0)
        a, b, other = clients

        def key(word: bytes) -> bytes:
            return b"\x01\x00" + b"k" * 12 + word

        entries = {
            key(b"hit"): (b"TAIL-hit", 10.0, 3),
            key(b"old"): (b"TAIL-old", 10.0, 2),
            key(b"stale"): (b"TAIL-stale", 6.0, 3),
        }
        sent = [(a, b"hit"), (b, b"hit"), (a, b"miss"), (a, b"hit"), (a, b"old")]
        sent += [(a, b"stale"), (other, b"hit"), (a, b"hit")]
        for n, (c, word) in enumerate(sent):
            c.sendto(bytes((0, n)) + key(word), server.getsockname())
        batch = kind(16, 512)
        assert batch.recv(server) == len(sent)
        runs = {i: batch.answer(i, entries, 3, 6.0) for i in (0, 2, 3, 4, 5, 6, 7)}
        assert runs == {0: 2, 2: 2, 3: 4, 4: 4, 5: 5, 6: 7, 7: 8}
        batch.reply(2, b"slow")
        entries.clear()
        assert batch.flush(server) == []
        assert [a.recv(64) for _ in range(4)] == [
            b"\x00\x00TAIL-hit",
            b"\x00\x03TAIL-hit",
            b"\x00\x07TAIL-hit",
            b"slow",  # in the order queued
        ]
        assert b.recv(64) == b"\x00\x01TAIL-hit"
        assert other.recv(64) == b"\x00\x06TAIL-hit"
    finally:
        for s in (server, *clients):
            s.close()


def _memo_batch(keys: int, key_max: int) -> Any:
    """The build's batch: the compiled one with a key memo of ``keys`` slots for queries up to
    ``key_max`` bytes; the pure one, which keeps no memo, as it is."""
    if COMPILED:
        return mmsg.Batch(32, 512, keys, key_max)
    return udpio.Datagrams(32, 512)


@pytest.mark.parametrize(("keys", "key_max"), [(1, 512), (4, 512), (4, 8)])
def test_the_key_memo_never_answers_a_query_with_anothers_entry(keys: int, key_max: int) -> None:
    """The compiled memo keeps queries' bytes as objects, one a slot: with one slot (each query
    takes it from the last), a few, or queries too long to keep, repeated and alternating
    queries each get their own entry's reply, batch after batch. The pure batch (no memo) is
    held to the same answers."""
    words = [b"alpha", b"beta", b"gamma", b"delta", b"alpha!", b"beta" * 20]
    entries = {b"\x01\x00" + b"k" * 12 + w: (b"TAIL-" + w, 10.0, 3) for w in words}
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(2.0)
    try:
        batch = _memo_batch(keys, key_max)
        order = [words[i % len(words)] for i in range(20)] + [words[0]] * 4
        for _ in range(3):  # the memo as the last batch left it
            for n, w in enumerate(order):
                client.sendto(bytes((0, n)) + b"\x01\x00" + b"k" * 12 + w, server.getsockname())
            assert batch.recv(server) == len(order)
            assert batch.answer(0, entries, 3, 6.0) == len(order)
            assert batch.flush(server) == []
            got = [client.recv(512) for _ in order]
            assert got == [bytes((0, n)) + b"TAIL-" + w for n, w in enumerate(order)]
    finally:
        server.close()
        client.close()


def test_the_key_memo_size_is_a_power_of_two() -> None:
    """The memo's slot is a hash's top bits: its size must be a power of two, as configured;
    the compiled batch refuses any other."""
    memo = const.DNS_UDP_KEY_MEMO
    assert memo > 0 and memo & (memo - 1) == 0
    if COMPILED:
        with pytest.raises(ValueError):
            mmsg.Batch(4, 512, 3, 128)
        mmsg.Batch(4, 512, memo, const.DNS_UDP_KEY_MEMO_BYTES)
