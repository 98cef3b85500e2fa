"""mDNS ingest: a received datagram -> checks -> records in the store, attributed to its VLAN.

Pure apart from the store it writes to: it takes bytes, the source, the arrival interface
and ``now``. Every rejected packet becomes a counter with a reason and a rate-limited line.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import dns.rdatatype

from .. import const
from ..logutil import RateLimitedLog
from ..store import Store
from . import wire
from .links import Links

log = logging.getLogger(__name__)
_limited = RateLimitedLog(log)

# Records that say something about what exists; NSEC/OPT are mDNS plumbing, not answers.
_SKIP_TYPES = frozenset({dns.rdatatype.NSEC, dns.rdatatype.OPT})

PacketListener = Callable[[str, wire.Packet, bytes, str, int, int], None]


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
        self.received: Counter[tuple[str, str]] = Counter()  # (vlan, kind) -> packets
        self.dropped: Counter[tuple[str, str]] = Counter()  # (vlan, reason) -> packets
        self.malformed: Counter[tuple[str, str]] = Counter()  # (vlan, WireError.reason) -> packets
        self.records: Counter[str] = Counter()  # vlan -> records accepted
        # consumers of parsed packets (chrony, the reflector): (vlan, packet, raw, src, port, fam)
        self.listeners: list[PacketListener] = []

    def handle(
        self, data: bytes, src: str, port: int, ifindex: int, family: int, now: float
    ) -> wire.Packet | None:
        link = self.links.by_index.get(ifindex)
        if link is None:
            self.dropped[("", "unknown_interface")] += 1
            _limited.debug(
                ("unknown", ifindex), "dropped mDNS from %s: interface %d is no VLAN", src, ifindex
            )
            return None
        vlan = link.vlan
        if src in self.links.own_addresses:
            self.dropped[(vlan, "own_packet")] += 1
            _limited.debug(
                ("own", vlan), "VLAN %s: dropped our own mDNS packet (looped back)", vlan
            )
            return None
        if len(data) > const.MDNS_MAX_PACKET:
            self.dropped[(vlan, "oversized")] += 1
            _limited.warning(
                ("oversized", vlan),
                "VLAN %s: dropped %d-byte mDNS packet from %s",
                vlan,
                len(data),
                src,
            )
            return None
        try:
            packet = wire.parse(data)
        except wire.WireError as exc:
            self.dropped[(vlan, "malformed")] += 1
            self.malformed[(vlan, exc.reason)] += 1
            _limited.warning(
                ("malformed", vlan, src),
                "VLAN %s: malformed mDNS packet from %s:%d (%s)",
                vlan,
                src,
                port,
                exc,
            )
            return None
        if packet.opcode != 0 or packet.flags & 0x000F:
            self.dropped[(vlan, "bad_opcode_or_rcode")] += 1
            _limited.debug(
                ("opcode", vlan, src),
                "VLAN %s: dropped mDNS from %s: opcode %d / rcode %d (RFC 6762 §18.3, §18.11)",
                vlan,
                src,
                packet.opcode,
                packet.flags & 0x000F,
            )
            return None
        if packet.is_response:
            if port != const.MDNS_PORT:
                # RFC 6762 §6: responses must come from port 5353 (or they are not mDNS)
                self.dropped[(vlan, "bad_source_port")] += 1
                _limited.info(
                    ("port", vlan, src),
                    "VLAN %s: ignored response from %s port %d",
                    vlan,
                    src,
                    port,
                )
                return None
            if not link.on_link(src):
                self.dropped[(vlan, "off_subnet")] += 1
                _limited.info(
                    ("offlink", vlan, src),
                    "VLAN %s: ignored response from off-subnet %s",
                    vlan,
                    src,
                )
                return None
            self.received[(vlan, "response")] += 1
            self._apply(vlan, packet, now)
        else:
            self.received[(vlan, "query")] += 1
        for listener in self.listeners:
            listener(vlan, packet, data, src, port, family)
        return packet

    def _apply(self, vlan: str, packet: wire.Packet, now: float) -> None:
        store = self.store
        count = 0
        for rec in packet.answers + packet.additionals + packet.authorities:
            if rec.rdtype in _SKIP_TYPES or rec.rdclass != 1:
                continue
            store.add(
                vlan,
                rec.name,
                rec.rdtype,
                rec.rdata,
                rec.ttl,
                now,
                rec.cache_flush,
                digest=rec.digest,
            )
            count += 1
        self.records[vlan] += count
