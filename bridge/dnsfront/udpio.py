"""The UDP listeners' system calls, in batches: recvmmsg/sendmmsg when compiled, else one
recvfrom and one sendto per datagram; the server's loop is the same over either.

``Datagrams`` (here, pure Python) and ``mmsg.Batch`` (mmsg.pyx, built only by the compiled
build, build_ext.py) have one interface: ``recv(sock)`` the waiting datagrams (at most
``capacity``), ``host(i)`` / ``addr(i)`` their senders, ``reply(i, data)`` queue an answer,
``flush(sock)`` send them all and list the failures as (index, errno).
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any, Protocol

log = logging.getLogger(__name__)


class UdpBatch(Protocol):
    @property
    def capacity(self) -> int: ...
    def recv(self, sock: socket.socket) -> list[bytes]: ...
    def host(self, i: int) -> str: ...
    def addr(self, i: int) -> tuple[Any, ...]: ...
    def reply(self, i: int, data: bytes) -> None: ...
    def flush(self, sock: socket.socket) -> list[tuple[int, int]]: ...


class Datagrams:
    """One ``recvfrom`` per datagram until EAGAIN (at most ``size``), one ``sendto`` per
    reply: the pure-Python build's path, as it was before batching."""

    __slots__ = ("_addrs", "_out", "size", "slot")

    def __init__(self, size: int, slot: int) -> None:
        self.size = size  # datagrams per recv
        self.slot = slot  # bytes; a longer datagram is cut (recvfrom's buffer)
        self._addrs: list[tuple[Any, ...]] = []
        self._out: list[tuple[bytes, tuple[Any, ...], int]] = []

    @property
    def capacity(self) -> int:
        return self.size

    def recv(self, sock: socket.socket) -> list[bytes]:
        """The datagrams waiting, [] when none; OSError only when nothing was received (a
        later one: the datagrams so far are answered, the error comes back next time)."""
        recvfrom, slot = sock.recvfrom, self.slot
        addrs: list[tuple[Any, ...]] = []
        datagrams: list[bytes] = []
        self._addrs = addrs
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
        return datagrams

    def host(self, i: int) -> str:
        return str(self._addrs[i][0])

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
    return mmsg.Batch(size, slot)
