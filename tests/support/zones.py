"""The three VLANs, their domains and subnets that the resolver and DNS server tests share,
``publish``: a service as an avahi publisher announces it, put straight into a store, and
``cast_to_trusted``: a policy to reload to."""

from __future__ import annotations

import dns.name
import dns.rdata
import dns.rdatatype
import dns.rdtypes.ANY.PTR

from bridge.policy import PolicyEngine, parse_policy_text
from bridge.store import Store

PTR, SRV, TXT, A, AAAA = (
    dns.rdatatype.PTR,
    dns.rdatatype.SRV,
    dns.rdatatype.TXT,
    dns.rdatatype.A,
    dns.rdatatype.AAAA,
)
VLANS = ["trusted", "iot", "guest"]
DOMAINS = {v: dns.name.from_text(f"{v}.home.arpa.") for v in VLANS}
SUBNETS = {
    "trusted": ["10.10.0.0/24", "fd00:10::/64"],
    "iot": ["10.20.0.0/24"],
    "guest": ["10.30.0.0/24"],
}


def n(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def publish(
    store: Store,
    vlan: str,
    instance: bytes,
    stype: str,
    host: str,
    addrs: list[str],
    now: float = 0.0,
) -> None:
    """What an avahi publisher puts on the wire, as the store receives it."""
    tname = n(f"{stype}.local.")
    iname = dns.name.Name((instance, *tname.labels))
    store.add(
        vlan,
        n("_services._dns-sd._udp.local."),
        PTR,
        dns.rdata.from_text("IN", "PTR", tname.to_text()),
        4500,
        now,
    )
    store.add(vlan, tname, PTR, dns.rdtypes.ANY.PTR.PTR(1, PTR, iname), 4500, now)
    store.add(
        vlan, iname, SRV, dns.rdata.from_text("IN", "SRV", f"0 0 631 {host}.local."), 120, now
    )
    store.add(vlan, iname, TXT, dns.rdata.from_text("IN", "TXT", '"rp=printer"'), 4500, now)
    for addr in addrs:
        rdtype = AAAA if ":" in addr else A
        store.add(
            vlan,
            n(f"{host}.local."),
            rdtype,
            dns.rdata.from_text("IN", dns.rdatatype.to_text(rdtype), addr),
            120,
            now,
        )


def cast_to_trusted() -> PolicyEngine:
    """A policy letting ``trusted`` see ``iot``'s _googlecast._tcp (a reload in the tests)."""
    allow = parse_policy_text(
        "apiVersion: mdnsgateway.io/v1alpha1\nkind: ServicePolicy\nmetadata: {name: cast}\n"
        "spec: {from: [iot], to: [trusted], services: [_googlecast._tcp]}\n",
        "p.yaml",
        VLANS,
    )
    return PolicyEngine(allow, VLANS)
