"""A scripted interface table (two VLAN bridges) with the store and ingest on it, for the
mDNS ingest and browser tests."""

from __future__ import annotations

import ipaddress

import dns.name

from bridge.config import VlanConfig
from bridge.interfaces import IFF_MULTICAST, IFF_UP, Interface
from bridge.mdns.ingest import Ingest
from bridge.mdns.links import Links
from bridge.store import Store

UP = IFF_UP | IFF_MULTICAST


def iface(name: str, index: int, *addrs: str) -> Interface:
    return Interface(name, index, UP, tuple(ipaddress.ip_interface(a) for a in addrs))


def setup() -> tuple[Store, Ingest, Links]:
    vlans = {
        "trusted": VlanConfig("trusted", "br10", dns.name.from_text("trusted.home.arpa.")),
        "iot": VlanConfig("iot", "br20", dns.name.from_text("iot.home.arpa.")),
    }
    links = Links(
        vlans,
        scan=lambda: [
            iface("br10", 7, "10.10.0.1/24", "fd00:10::1/64"),
            iface("br20", 9, "10.20.0.1/24"),
        ],
    )
    links.refresh()
    store = Store()
    return store, Ingest(store, links), links
