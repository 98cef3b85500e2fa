"""Ingest checks with a scripted interface table: provenance, RFC 6762 §6/§11 source checks."""

from __future__ import annotations

import socket

import dns.name
import dns.rdata
import dns.rdatatype

from bridge.config import VlanConfig
from bridge.mdns import wire
from bridge.mdns.links import Links
from tests.support.links import iface, setup

A = dns.rdatatype.A


def announcement(name: str = "printer.local.", addr: str = "10.20.0.5") -> bytes:
    rec = wire.Record(
        dns.name.from_text(name), A, 120, dns.rdata.from_text("IN", "A", addr), cache_flush=True
    )
    return wire.encode(wire.Packet(0, wire.FLAG_QR | wire.FLAG_AA, [], [rec]))


def test_records_are_attributed_to_the_arrival_interface() -> None:
    store, ingest, _ = setup()
    ingest.handle(announcement(), "10.20.0.5", 5353, 9, socket.AF_INET, 0.0)
    name = dns.name.from_text("printer.local.")
    assert store.get("iot", name, A, 1.0)
    assert store.get("trusted", name, A, 1.0) == []
    assert ingest.received[("iot", "response")] == 1


def test_response_from_another_port_is_ignored_and_counted() -> None:
    store, ingest, _ = setup()
    ingest.handle(announcement(), "10.20.0.5", 40000, 9, socket.AF_INET, 0.0)
    assert len(store) == 0
    assert ingest.dropped[("iot", "bad_source_port")] == 1


def test_response_from_off_subnet_source_is_ignored_and_counted() -> None:
    store, ingest, _ = setup()
    ingest.handle(announcement(), "10.10.0.5", 5353, 9, socket.AF_INET, 0.0)  # trusted's subnet
    ingest.handle(announcement(), "192.0.2.9", 5353, 9, socket.AF_INET, 0.0)
    assert len(store) == 0
    assert ingest.dropped[("iot", "off_subnet")] == 2


def test_ipv6_link_local_source_is_on_link() -> None:
    store, ingest, _ = setup()
    ingest.handle(announcement(addr="10.10.0.5"), "fe80::1234", 5353, 7, socket.AF_INET6, 0.0)
    assert store.get("trusted", dns.name.from_text("printer.local."), A, 1.0)


def test_own_unknown_interface_and_malformed_are_counted() -> None:
    store, ingest, _ = setup()
    ingest.handle(announcement(), "10.20.0.1", 5353, 9, socket.AF_INET, 0.0)  # our own address
    ingest.handle(announcement(), "10.30.0.5", 5353, 42, socket.AF_INET, 0.0)  # not a VLAN
    ingest.handle(b"\x00\x00\x84\x00\x00\x05", "10.20.0.5", 5353, 9, socket.AF_INET, 0.0)
    ingest.handle(b"\xff" * 10_000, "10.20.0.5", 5353, 9, socket.AF_INET, 0.0)
    assert len(store) == 0
    assert ingest.dropped[("iot", "own_packet")] == 1
    assert ingest.dropped[("", "unknown_interface")] == 1
    assert ingest.dropped[("iot", "malformed")] == 1
    assert ingest.dropped[("iot", "oversized")] == 1


def test_interface_recreated_with_new_index_is_followed() -> None:
    vlans = {"iot": VlanConfig("iot", "br20", dns.name.from_text("iot.home.arpa."))}
    table = [iface("br20", 9, "10.20.0.1/24")]
    links = Links(vlans, scan=lambda: table)
    joins, gone = links.refresh()
    assert [j.ifindex for j in joins] == [9] and gone == []
    table[:] = []
    joins, gone = links.refresh()
    assert joins == [] and [g.ifindex for g in gone] == [9]
    table[:] = [iface("br20", 15, "10.20.0.1/24")]
    joins, gone = links.refresh()
    assert [j.ifindex for j in joins] == [15]
    assert links.by_index[15].vlan == "iot" and 9 not in links.by_index
