"""The DNS pipeline without sockets (``Answers`` over a store holding one printer on
``trusted``), for tests/dnsfront/test_answer.py and test_fuzz.py."""

from __future__ import annotations

import ipaddress

import dns.message
import dns.name
import dns.rdata
import dns.rdatatype

from bridge.dnsfront.answer import Answers, Pending
from bridge.dnsfront.ondemand import OnDemand
from bridge.dnsfront.resolver import Resolver, View, Zones
from bridge.policy import default_engine
from bridge.store import Store
from tests.support.zones import DOMAINS, SUBNETS, VLANS, publish

A = dns.rdatatype.A
MAX_TTL = 10
T0 = 1000.0


class Pipeline:
    """Answers over a store holding one printer on ``trusted``; ``asked`` is what went to mDNS."""

    def __init__(self) -> None:
        self.store = Store()
        zones = Zones(
            DOMAINS,
            dns.name.from_text("home.arpa."),
            {v: [ipaddress.ip_network(x) for x in nets] for v, nets in SUBNETS.items()},
        )
        self.resolver = Resolver(self.store, zones, max_ttl=MAX_TTL, negative_ttl=7)
        self.asked: list[tuple[str, dns.name.Name, int]] = []
        self.ondemand = OnDemand(lambda v, n, t, urgent: self.asked.append((v, n, t)))
        self.ondemand.changes = self.store.subscribe(self.ondemand.on_change, active=False)
        self.answers = Answers(self.resolver, self.ondemand, self.store)
        self.engine = default_engine(VLANS)
        self.answers.set_views({v: View(v, v, self.engine.view(v)) for v in VLANS})
        publish(
            self.store, "trusted", b"Office Printer", "_ipp._tcp", "office", ["10.10.0.5"], now=T0
        )

    def ask(
        self, wire: bytes, view: str = "trusted", now: float = T0, tcp: bool = False
    ) -> bytes | Pending | None:
        return self.answers.answer(wire, view, tcp, now)

    def add_a(self, name: str, address: str, now: float) -> None:
        rdata = dns.rdata.from_text("IN", "A", address)
        self.store.add("trusted", dns.name.from_text(name), A, rdata, 120, now)

    def reply(self, wire: bytes, view: str = "trusted", now: float = T0) -> dns.message.Message:
        out = self.ask(wire, view, now)
        assert isinstance(out, bytes), out
        return dns.message.from_wire(out)
