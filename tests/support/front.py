"""The in-process DNS front end's handle (``Front``) that tests/dnsfront/conftest.py's ``front``
fixture yields, and ``free_port`` for it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import dns.name

from bridge.dnsfront.server import DnsServer
from bridge.store import Store


def free_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1 and ::1 (bounded number of tries)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
        try:
            for fam, kind, host in (
                (socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1"),
                (socket.AF_INET6, socket.SOCK_STREAM, "::1"),
                (socket.AF_INET6, socket.SOCK_DGRAM, "::1"),
            ):
                with socket.socket(fam, kind) as t:
                    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    t.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port on loopback")


@dataclass
class Front:
    loop: asyncio.AbstractEventLoop
    store: Store
    server: DnsServer
    port_view: int  # fixed view "trusted"
    port_addr: int  # view by client address (127.0.0.1 is in no VLAN: REFUSED)
    asked: list[tuple[str, dns.name.Name, int]] = field(default_factory=list)

    def call(self, fn: Callable[[], Any]) -> Any:
        fut: Future[Any] = Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except Exception as exc:  # pragma: no cover - surfaced to the test
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return fut.result(timeout=5)

    def now(self) -> float:
        return float(self.call(self.loop.time))
