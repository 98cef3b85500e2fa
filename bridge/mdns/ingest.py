"""mDNS ingest: a received datagram -> checks -> records in the store, attributed to its VLAN.

Pure apart from the store it writes to: it takes bytes, the source, the arrival interface
and ``now``. Every rejected packet becomes a counter with a reason and a rate-limited line.

The record guard (README, "Security"): a record that cannot be true of a device on the arrival
VLAN is refused, counted per VLAN and reason (``refused``) and logged at most every 10 s per
(reason, VLAN): records of a class other than IN and of meta types (dropped by the parser
before their rdata is read), and A/AAAA records naming an address that is not on the VLAN
(its subnets or link-local; ``trust_any_address`` turns this off per VLAN). Ownership of
unique records is the store's part of it.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Callable

import dns.rdatatype

from .. import const
from ..logutil import RateLimitedLog
from ..store import Store
from . import wire
from .links import Link, Links

log = logging.getLogger(__name__)


# Records that say something about what exists; NSEC/OPT are mDNS plumbing, not answers.
_SKIP_TYPES = frozenset({dns.rdatatype.NSEC, dns.rdatatype.OPT})
_ADDRESS_TYPES = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA})

# reasons for refused records (the store adds its own: see Store.refused_records)
NOT_IN = "class_not_in"  # a class other than IN
META = "meta_type"  # ANY, AXFR, IXFR, TYPE0, ...: not data
ADDRESS = "address_not_on_vlan"  # an A/AAAA address off the arrival VLAN

# (vlan, packet, raw bytes, source address, source port, family, now): ``now`` is the time the
# packet was handled by, on the event loop's clock, so listeners need no clock of their own
PacketListener = Callable[[str, wire.Packet, bytes, str, int, int, float], None]


class Ingest:
    """Every received mDNS datagram enters here: its VLAN found from the arrival interface,
    checked (our own packets, size, parse, opcode, source port, subnet), its records written
    to the store, then handed to ``listeners`` (the chrony responder, the reflector; both
    subscribed by ``bridge/app.py``).

    Counters (``received``, ``dropped`` with a reason, ``records``) are plain integers for the
    hot path; ``bridge.metrics`` exports them.
    """

    def __init__(self, store: Store, links: Links) -> None:
        self.store = store
        self.links = links
        # per instance, not per module: two gateways (or two tests) never quiet each other's lines
        self._limited = RateLimitedLog(log)
        self.received: Counter[tuple[str, str]] = Counter()  # (vlan, kind) -> packets
        self.dropped: Counter[tuple[str, str]] = Counter()  # (vlan, reason) -> packets
        self.malformed: Counter[tuple[str, str]] = Counter()  # (vlan, WireError.reason) -> packets
        self.records: Counter[str] = Counter()  # vlan -> records accepted
        self.refused: Counter[tuple[str, str]] = Counter()  # (vlan, reason) -> records
        # consumers of parsed packets (chrony, the reflector): (vlan, packet, raw, src, port, fam)
        self.listeners: list[PacketListener] = []

    def refusals(self) -> dict[tuple[str, str], int]:
        """The record guard's refusals, (VLAN, reason) -> records: ingest's and the store's."""
        return {**self.refused, **self.store.refused_records}

    def handle(
        self, data: bytes, src: str, port: int, ifindex: int, family: int, now: float
    ) -> wire.Packet | None:
        link = self.links.by_index.get(ifindex)
        if link is None:
            self.dropped[("", "unknown_interface")] += 1
            self._limited.debug(
                ("unknown", ifindex),
                "dropped mDNS from %s: interface %d is no VLAN",
                src,
                ifindex,
                source=src,
                now=now,
            )
            return None
        vlan = link.vlan
        if src in self.links.own_addresses:
            self.dropped[(vlan, "own_packet")] += 1
            self._limited.debug(
                ("own", vlan),
                "VLAN %s: dropped our own mDNS packet (looped back)",
                vlan,
                source=src,
                now=now,
            )
            return None
        if len(data) > const.MDNS_MAX_PACKET:
            self.dropped[(vlan, "oversized")] += 1
            self._limited.warning(
                ("oversized", vlan),
                "VLAN %s: dropped %d-byte mDNS packet from %s",
                vlan,
                len(data),
                src,
                source=src,
                now=now,
            )
            return None
        try:
            packet = wire.parse(data)
        except wire.WireError as exc:
            self.dropped[(vlan, "malformed")] += 1
            self.malformed[(vlan, exc.reason)] += 1
            self._limited.warning(
                ("malformed", vlan),
                "VLAN %s: malformed mDNS packet from %s:%d (%s)",
                vlan,
                src,
                port,
                exc,
                source=src,
                now=now,
            )
            return None
        if packet.not_in:
            self._refuse(vlan, NOT_IN, src, packet.not_in, now)
        if packet.meta:
            self._refuse(vlan, META, src, packet.meta, now)
        if packet.opcode != 0 or packet.flags & 0x000F:
            self.dropped[(vlan, "bad_opcode_or_rcode")] += 1
            self._limited.debug(
                ("opcode", vlan),
                "VLAN %s: dropped mDNS from %s: opcode %d / rcode %d (RFC 6762 §18.3, §18.11)",
                vlan,
                src,
                packet.opcode,
                packet.flags & 0x000F,
                source=src,
                now=now,
            )
            return None
        if packet.is_response:
            if port != const.MDNS_PORT:
                # RFC 6762 §6: responses must come from port 5353 (or they are not mDNS)
                self.dropped[(vlan, "bad_source_port")] += 1
                self._limited.info(
                    ("port", vlan),
                    "VLAN %s: ignored response from %s port %d",
                    vlan,
                    src,
                    port,
                    source=src,
                    now=now,
                )
                return None
            if not link.on_link(src):
                self.dropped[(vlan, "off_subnet")] += 1
                self._limited.info(
                    ("offlink", vlan),
                    "VLAN %s: ignored response from off-subnet %s",
                    vlan,
                    src,
                    source=src,
                    now=now,
                )
                return None
            self.received[(vlan, "response")] += 1
            # one string per address, not per packet: each record it owns refers to it
            self.apply(link, packet, sys.intern(src), now)
        else:
            self.received[(vlan, "query")] += 1
        for listener in self.listeners:
            listener(vlan, packet, data, src, port, family, now)
        return packet

    def apply(self, link: Link, packet: wire.Packet, src: str, now: float) -> None:
        """A response's records into the store, as heard from ``src`` on ``link`` (address
        records the link cannot hold refused); sets ``packet.refused``. ``handle`` calls it
        for an accepted response, loadtest.memprofile to feed the store without sockets."""
        store = self.store
        vlan = link.vlan
        count = 0
        refused = 0  # over packet.records(): answers, authorities, additionals
        na = len(packet.answers)
        for at, section in (
            (0, packet.answers),
            (na + len(packet.authorities), packet.additionals),
            (na, packet.authorities),
        ):
            for i, rec in enumerate(section, at):
                rdtype = rec.rdtype
                if rdtype in _SKIP_TYPES:
                    continue
                if rdtype in _ADDRESS_TYPES:
                    raw = rec.digest  # the parser's: the address's 4 or 16 octets
                    if raw is None or not link.holds_address(raw):
                        self._refuse(vlan, ADDRESS, src, 1, now, rec)
                        refused |= 1 << i
                        continue
                if store.add(
                    vlan,
                    rec.name,
                    rdtype,
                    rec.rdata,
                    rec.ttl,
                    now,
                    rec.cache_flush,
                    digest=rec.digest,
                    source=src,
                ):
                    count += 1
                else:  # ownership (counted by the store)
                    refused |= 1 << i
        packet.refused = refused
        self.records[vlan] += count

    def _refuse(
        self,
        vlan: str,
        reason: str,
        src: str,
        count: int,
        now: float,
        rec: wire.Record | None = None,
    ) -> None:
        self.refused[(vlan, reason)] += count
        what = f" {rec.name} {dns.rdatatype.to_text(rec.rdata.rdtype)} {rec.rdata}" if rec else ""
        self._limited.warning(
            ("refused", reason, vlan),
            "VLAN %s: refused mDNS record (%s)%s from %s (%d so far)",
            vlan,
            reason,
            what,
            src,
            self.refused[(vlan, reason)],
            source=src,
            now=now,
        )
