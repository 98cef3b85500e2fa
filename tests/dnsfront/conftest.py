"""An in-process DNS front end on loopback: the real server, store and resolver, no mDNS."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import Iterator
from typing import Any

import dns.name
import pytest

from bridge.dnsfront.answer import Answers, view_by_address
from bridge.dnsfront.ondemand import OnDemand
from bridge.dnsfront.resolver import Resolver, View, Zones
from bridge.dnsfront.server import DnsServer, Listener
from bridge.policy import default_engine
from bridge.store import Store
from tests.support.front import Front, free_port
from tests.support.zones import DOMAINS, SUBNETS, VLANS, publish


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
    ondemand = OnDemand(lambda v, n, t, urgent: asked.append((v, n, t)), timeout=0.6)
    ondemand.changes = store.subscribe(ondemand.on_change, active=False)
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

    answers = Answers(resolver, ondemand, store)
    server = DnsServer(answers, ondemand.lookup, view_by_address(vlan_of, None))
    engine = default_engine(VLANS)
    answers.set_views({v: View(v, v, engine.view(v)) for v in VLANS})
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
