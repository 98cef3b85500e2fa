"""The UDP listeners' system calls, in batches: recvmmsg/sendmmsg when compiled, else one
recvfrom and one sendto per datagram; the server's loop is the same over either.

``Datagrams`` (here, pure Python) and ``mmsg.Batch`` (mmsg.pyx, built only by the compiled
build, build_ext.py) have one interface: ``recv(sock)`` receives the waiting datagrams (at most
``capacity``) and says how many, ``data(i)`` one's bytes, ``host(i)`` / ``addr(i)`` their
senders, ``answer(i, entries, epoch, now)`` queues the cached replies to a run of them from one
sender, ``reply(i, data)`` queues an answer, ``flush(sock)`` sends them all and lists the
failures as (index, errno).
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any, Protocol

from .. import const
from .cache import Entry, QueryKey

log = logging.getLogger(__name__)


class UdpBatch(Protocol):
    @property
    def capacity(self) -> int: ...
    def recv(self, sock: socket.socket) -> int: ...
    def data(self, i: int) -> bytes: ...
    def host(self, i: int) -> str: ...
    def answer(self, i: int, entries: dict[QueryKey, Entry], epoch: int, now: float) -> int: ...
    def addr(self, i: int) -> tuple[Any, ...]: ...
    def reply(self, i: int, data: bytes) -> None: ...
    def flush(self, sock: socket.socket) -> list[tuple[int, int]]: ...


class Datagrams:
    """One ``recvfrom`` per datagram until EAGAIN (at most ``size``), one ``sendto`` per
    reply: the pure-Python build's path, as it was before batching."""

    __slots__ = ("_addrs", "_datagrams", "_out", "size", "slot")

    def __init__(self, size: int, slot: int) -> None:
        self.size = size  # datagrams per recv
        self.slot = slot  # bytes; a longer datagram is cut (recvfrom's buffer)
        self._addrs: list[tuple[Any, ...]] = []
        self._datagrams: list[bytes] = []
        self._out: list[tuple[bytes, tuple[Any, ...], int]] = []

    @property
    def capacity(self) -> int:
        return self.size

    def recv(self, sock: socket.socket) -> int:
        """How many datagrams were waiting, 0 when none; OSError only when nothing was
        received (a later one: the datagrams so far are answered, the error comes back next
        time)."""
        recvfrom, slot = sock.recvfrom, self.slot
        addrs: list[tuple[Any, ...]] = []
        datagrams: list[bytes] = []
        self._addrs, self._datagrams = addrs, datagrams
        self._out.clear()
        for _ in range(self.size):
            try:
                data, addr = recvfrom(slot)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                if datagrams:
                    break
                raise
            datagrams.append(data)
            addrs.append(addr)
        return len(datagrams)

    def data(self, i: int) -> bytes:
        return self._datagrams[i]

    def host(self, i: int) -> str:
        return str(self._addrs[i][0])

    def answer(self, i: int, entries: dict[QueryKey, Entry], epoch: int, now: float) -> int:
        """Queue the replies to datagram ``i`` and the ones after it from the same sender
        address while their bytes after the ID are a key of ``entries`` with an entry valid
        after ``now`` and of ``epoch``; the index of the first one not answered. The
        compiled Batch does the same without a bytes object per reply (mmsg.pyx)."""
        datagrams, addrs, out = self._datagrams, self._addrs, self._out
        host = addrs[i][0]
        for j in range(i, len(datagrams)):
            data = datagrams[j]
            entry = entries.get(data[2:])
            if addrs[j][0] != host or entry is None or entry[1] <= now or entry[2] != epoch:
                return j
            out.append((data[:2] + entry[0], addrs[j], j))
        return len(datagrams)

    def addr(self, i: int) -> tuple[Any, ...]:
        return self._addrs[i]

    def reply(self, i: int, data: bytes) -> None:
        self._out.append((data, self._addrs[i], i))

    def flush(self, sock: socket.socket) -> list[tuple[int, int]]:
        failed: list[tuple[int, int]] = []
        sendto = sock.sendto
        for data, addr, i in self._out:
            try:
                sendto(data, addr)
            except OSError as exc:
                failed.append((i, exc.errno or errno.EIO))
        self._out.clear()
        return failed


def make_batch(size: int, slot: int) -> UdpBatch:
    """The compiled build's recvmmsg/sendmmsg batch when it is there, else ``Datagrams``;
    chosen once, when the DNS server starts, and logged."""
    try:
        from . import mmsg  # built only by the compiled build (build_ext.py)
    except ImportError:
        log.info("DNS over UDP: recvfrom/sendto, one datagram per call (pure-Python build)")
        return Datagrams(size, slot)
    log.info("DNS over UDP: recvmmsg/sendmmsg, up to %d datagrams per call (compiled)", size)
    return mmsg.Batch(size, slot, const.DNS_UDP_KEY_MEMO, const.DNS_UDP_KEY_MEMO_BYTES)
