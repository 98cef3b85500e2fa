"""An in-process DNS front end on loopback: the real server, store and resolver, no mDNS."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import dns.name
import pytest

from bridge.dnsfront.ondemand import OnDemand
from bridge.dnsfront.resolver import Resolver, View, Zones
from bridge.dnsfront.server import DnsServer, Listener, view_by_address
from bridge.policy import default_engine
from bridge.store import Store
from tests.dnsfront.test_resolver import DOMAINS, SUBNETS, VLANS, publish


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


@pytest.fixture
def front() -> Iterator[Front]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    thread = threading.Thread(
        target=lambda: (asyncio.set_event_loop(loop), ready.set(), loop.run_forever()), daemon=True
    )
    thread.start()
    ready.wait(5)
    store = Store()
    zones = Zones(
        DOMAINS,
        dns.name.from_text("home.arpa."),
        {v: [ipaddress.ip_network(x) for x in nets] for v, nets in SUBNETS.items()},
    )
    resolver = Resolver(store, zones, max_ttl=10, negative_ttl=7)
    asked: list[tuple[str, dns.name.Name, int]] = []
    ondemand = OnDemand(store, lambda v, n, t, urgent: asked.append((v, n, t)), timeout=0.6)
    subnets = {v: [ipaddress.ip_network(x) for x in nets] for v, nets in SUBNETS.items()}

    def vlan_of(ip: Any) -> str | None:
        return next(
            (
                v
                for v, nets in subnets.items()
                for net in nets
                if ip.version == net.version and ip in net
            ),
            None,
        )

    server = DnsServer(resolver, ondemand, view_by_address(vlan_of, None))
    engine = default_engine(VLANS)
    server.set_views({v: View(v, v, engine.view(v)) for v in VLANS})
    p1, p2 = free_port(), free_port()
    f = Front(loop, store, server, p1, p2, asked)
    f.call(
        lambda: publish(
            store,
            "trusted",
            b"Office Printer",
            "_ipp._tcp",
            "office",
            ["10.10.0.5", "fd00:10::5"],
            now=loop.time(),
        )
    )
    listeners = [
        Listener(("127.0.0.1", p1), "trusted"),
        Listener(("::1", p1), "trusted"),
        Listener(("127.0.0.1", p2), None),
    ]
    asyncio.run_coroutine_threadsafe(server.start(listeners), loop).result(5)
    yield f
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()
