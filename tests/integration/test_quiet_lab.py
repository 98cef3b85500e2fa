"""Quiet browsing (issue 18 part 1) in the namespace lab: what the gateway asks on the wire.

A python-zeroconf responder on trusted1 (dual-stack) publishes N services with short TTLs
(SRV and addresses 20 s, PTR and TXT 60 s), so refresh points come within seconds rather than
minutes; a sniffer on trusted2 records every mDNS packet the router sends on the VLAN (IPv4
and IPv6). The counts are bounded from the browse schedule, not from wall-clock speed: the
sharp assertions are which questions appear at all.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import dns.message
import dns.name
import dns.rdatatype
import pytest

from netlab.lab import Lab, ZeroconfPublisher, gateway_config, gateway_ready, poll_until
from netlab.mdns_probe import Sniffer, router_sources

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

SERVICES = 6
HOST_TTL = 20  # s; SRV, A, AAAA (python-zeroconf's host_ttl)
OTHER_TTL = 60  # s; PTR, TXT (other_ttl): the browse runs no slower than 80 % of it
TYPE = "_quiet._tcp.local."
PTR, SRV = dns.rdatatype.PTR, dns.rdatatype.SRV


def instance(i: int) -> str:
    return f"Quiet {i}.{TYPE}"


@pytest.fixture(scope="module")
def world(lab: Lab) -> Iterator[dict[str, object]]:
    pub = ZeroconfPublisher(
        lab,
        lab.hosts["trusted1"],
        [
            {
                "name": f"Quiet {i}",
                "type": "_quiet._tcp",
                "port": 8000 + i,
                "txt": [f"n={i}"],
                "server": "quietbox.local.",
                "host_ttl": HOST_TTL,
                "ttl": OTHER_TTL,
            }
            for i in range(SERVICES)
        ],
        host_name="quietbox",
    )
    pub.wait_ready(timeout=30.0)
    sniffers = {
        fam: Sniffer(lab.hosts["trusted2"], fam) for fam in (socket.AF_INET, socket.AF_INET6)
    }
    started = time.monotonic()
    with gateway_ready(lab, gateway_config(lab)) as gw:
        yield {"gw": gw, "pub": pub, "sniffers": sniffers, "started": started}
    for s in sniffers.values():
        s.close()
    pub.stop()


def gateway_questions(
    lab: Lab, world: dict[str, object], family: int, t0: float, t1: float = float("inf")
) -> list[list[tuple[str, int, bool]]]:
    """The questions of each query the router sent on trusted from t0 to t1 (monotonic)."""
    sniffer = world["sniffers"][family]  # type: ignore[index]
    out = []
    for p in sniffer.since(t0, src=router_sources(lab, "trusted")):
        if p.t > t1:
            continue
        msg = dns.message.from_wire(p.data)
        if msg.flags & 0x8000:  # a response (our own records, e.g. the router's services)
            continue
        # (name, type, QU): the top bit of the class asks for a unicast answer (on demand)
        out.append(
            [(q.name.to_text(), int(q.rdtype), bool(q.rdclass & 0x8000)) for q in msg.question]
        )
    return out


def dig_srv(lab: Lab, name: str) -> list[str]:
    out = lab.dig(lab.gw, "@127.0.0.1", "-p", "5310", "+short", name, "SRV")
    return [line for line in out.splitlines() if line.strip()]


def test_no_interest_means_only_browses_and_a_bounded_count(
    lab: Lab, world: dict[str, object]
) -> None:
    """From 5 s to 45 s after start (SRV and addresses expire twice over meanwhile): only
    PTR browses, at doubling intervals capped at 0.8 x 60 s, over both families."""
    started: float = world["started"]  # type: ignore[assignment]
    t0, t1 = started + 5.0, started + 45.0
    poll_until(lambda: time.monotonic() > t1 + 0.5, timeout=60.0, interval=0.5)
    for family in (socket.AF_INET, socket.AF_INET6):
        queries = gateway_questions(lab, world, family, t0, t1)
        asked = {q[:2] for query in queries for q in query}
        assert asked, "the browses must go on"
        assert {t for _, t in asked} == {PTR}, f"asked without interest: {sorted(asked)}"
        # _services and _quiet browses at 8, 16, 32 s (+ a gathered one each) at most: the
        # old behaviour asked SRV/A/AAAA of every instance at 16 s and 36 s too
        assert len(queries) <= 8, queries


def test_a_dns_client_makes_its_record_refreshed_over_one_family(
    lab: Lab, world: dict[str, object]
) -> None:
    asking = instance(0)
    wanted = dns.name.from_text(asking).to_text()  # as a question's name prints: Quiet\0320.
    answer = poll_until(lambda: dig_srv(lab, asking), timeout=10.0, interval=0.2)
    assert answer == ["0 0 8000 quietbox.local."]
    asked_at = time.monotonic()

    def refreshed() -> bool:
        qs = gateway_questions(lab, world, socket.AF_INET, asked_at)
        return any((wanted, SRV, False) in query for query in qs)

    # the SRV (20 s) is asked again at 80 % of its TTL after it was last heard
    def why() -> str:
        both = {
            f: gateway_questions(lab, world, f, asked_at) for f in (socket.AF_INET, socket.AF_INET6)
        }
        return f"the SRV refresh; asked since: {both}"

    poll_until(refreshed, timeout=HOST_TTL + 10.0, interval=0.2, message=why)
    seen = time.monotonic()
    # quietbox sent its records over both families: the refresh went over IPv4 only, and
    # its answer came (no IPv6 fallback a second later)
    poll_until(lambda: time.monotonic() > seen + 2.0, timeout=5.0, interval=0.1)
    v6 = gateway_questions(lab, world, socket.AF_INET6, asked_at)
    assert not any(q[:2] == (wanted, SRV) for query in v6 for q in query), v6
    # the other instances' SRV records nobody asked for are not refreshed
    v4 = gateway_questions(lab, world, socket.AF_INET, asked_at)
    others = {q for query in v4 for q in query if q[1] == SRV and q[0] != wanted}
    assert not others, others
    # and the answer stays in the cache past the TTL it had when the client asked: the
    # client's second answer needs no on-demand (QU) question
    poll_until(lambda: time.monotonic() > asked_at + HOST_TTL + 2.0, timeout=40.0, interval=0.5)
    before = time.monotonic()
    assert dig_srv(lab, asking) == ["0 0 8000 quietbox.local."]
    v4 = gateway_questions(lab, world, socket.AF_INET, before)
    assert not any(q == (wanted, SRV, True) for query in v4 for q in query), v4
