"""Continuous DNS-SD browsing and cache maintenance on every VLAN (RFC 6762 §5.2, §7.1).

What it asks and when is decided here from the store and the clock; sending is a callable.
- Service-type enumeration and every discovered type: first at once, then at doubling
  intervals up to an hour (never longer than 80 % of the PTR TTL we hold).
- Instances without SRV/TXT and SRV targets without addresses: asked for at once.
- Every cached record is re-asked at 80/85/90/95 % of its TTL so live devices never expire.
- On-demand questions from DNS cache misses.
The same question is never repeated on a VLAN within a second; known answers are listed.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

import dns.name
import dns.rdata
import dns.rdatatype

from .. import const
from ..dnssd import SERVICES, is_browse_target
from ..store import Store
from . import wire
from .links import Link, Links

log = logging.getLogger(__name__)

_MAX_QUERY_BYTES = const.MDNS_MAX_QUERY_BYTES
_MAX_TRACKED = const.MDNS_BROWSE_TRACKED_MAX

_INSTANCE: tuple[int, int] = (dns.rdatatype.SRV, dns.rdatatype.TXT)  # an instance needs both
_ADDRESS: tuple[int, int] = (dns.rdatatype.A, dns.rdatatype.AAAA)  # a target needs one
_ADDRESS_SET = frozenset(_ADDRESS)
_PTR = dns.rdatatype.PTR
_SRV = dns.rdatatype.SRV

Sender = Callable[[bytes, int, int], bool]  # (payload, ifindex, family) -> sent?
QKey = tuple[dns.name.Name, int]


@dataclass(slots=True)
class _Schedule:
    next: float
    interval: float


class Browser:
    """The gateway's own mDNS questions: what keeps the store complete and fresh.

    Passive listening alone leaves the store with what devices happen to announce: their
    announcements stop after start-up, a record's TTL runs out unless someone asks, and a
    PTR without its SRV and addresses answers no DNS query. So it browses every type it has
    seen, follows each new instance to its records (``on_record``, a store subscription made
    by bridge/app.py), re-asks records near the end of their TTL (RFC 6762 §5.2), and sends
    the questions of DNS misses, batched per tick."""

    def __init__(self, store: Store, links: Links, send: Sender) -> None:
        self.store = store
        self.links = links
        self.send = send
        self._browse: dict[tuple[str, dns.name.Name], _Schedule] = {}
        self._pending: dict[str, set[QKey]] = {}
        self._urgent: set[tuple[str, dns.name.Name, int]] = set()
        # instances and SRV targets that arrived, checked for missing records at the next
        # tick: by then the rest of their packet (SRV, TXT, addresses) is in the store
        self._followups: list[tuple[str, dns.name.Name, tuple[int, int]]] = []
        self._asked: dict[tuple[str, dns.name.Name, int], float] = {}
        self.queries_sent = 0
        self.wake: Callable[[], None] = lambda: None  # set by the app: run tick() soon

    # --- inputs ----------------------------------------------------------------------

    def ask(self, vlan: str, name: dns.name.Name, rdtype: int, urgent: bool = False) -> None:
        """Queue a question for the next tick.

        ``urgent`` (a DNS client is waiting) sends it as a QU question (RFC 6762 §5.4): the
        responder answers us directly even if it multicast the record within the last second,
        when §6 would otherwise make it stay silent and leave the client waiting.
        """
        self._pending.setdefault(vlan, set()).add((name, rdtype))
        if urgent:
            self._urgent.add((vlan, name, rdtype))
        self.wake()

    def start_vlan(self, vlan: str, now: float) -> None:
        """Begin (or restart after a link flap) browsing a VLAN from the first interval."""
        for key, sched in self._browse.items():
            if key[0] == vlan:
                sched.next, sched.interval = now, const.MDNS_BROWSE_FIRST_INTERVAL
        self._browse[(vlan, SERVICES)] = _Schedule(now, const.MDNS_BROWSE_FIRST_INTERVAL)
        for k in [k for k in self._asked if k[0] == vlan]:
            del self._asked[k]
        self.wake()

    def on_record(
        self, vlan: str, name: dns.name.Name, rdtype: int, rdata: dns.rdata.Rdata, added: bool
    ) -> None:
        """React to the one record that appeared: O(1), whatever the size of its RRset."""
        if not added or (rdtype != _PTR and rdtype != _SRV):
            return
        if rdtype == _PTR and name == SERVICES:
            target = rdata.target  # type: ignore[attr-defined]
            if (vlan, target) not in self._browse and len(self._browse) < _MAX_TRACKED:
                self._browse[(vlan, target)] = _Schedule(0.0, const.MDNS_BROWSE_FIRST_INTERVAL)
                self.wake()
        elif rdtype == _PTR and is_browse_target(name):
            if not self._followups:
                self.wake()
            self._followups.append((vlan, rdata.target, _INSTANCE))  # type: ignore[attr-defined]
        elif rdtype == _SRV:
            if not self._followups:
                self.wake()
            self._followups.append((vlan, rdata.target, _ADDRESS))  # type: ignore[attr-defined]

    # --- the clock -------------------------------------------------------------------

    def _ask_followups(self) -> None:
        """An instance needs its SRV and TXT, an SRV target one address record at least."""
        followups, self._followups = self._followups, []
        for vlan, name, wanted in followups:
            types = self.store.types_at(vlan, name)
            address = wanted is _ADDRESS
            if address and types & _ADDRESS_SET:
                continue
            for t in wanted:
                if address or t not in types:
                    self.ask(vlan, name, t)

    def tick(self, now: float) -> None:
        if self._followups:
            self._ask_followups()
        refresh = self.store.due_refresh(now)
        per_vlan: dict[str, set[QKey]] = {}
        for vlan, name, rdtype in refresh:
            per_vlan.setdefault(vlan, set()).add((name, rdtype))
        for (vlan, name), sched in self._browse.items():
            if sched.next <= now:
                per_vlan.setdefault(vlan, set()).add((name, dns.rdatatype.PTR))
                cap = const.MDNS_BROWSE_MAX_INTERVAL
                held = self.store.get(vlan, name, dns.rdatatype.PTR, now)
                if held:
                    ttl = min(c.ttl for c in held)
                    cap = min(cap, max(const.MDNS_BROWSE_MIN_CAP, const.MDNS_BROWSE_TTL_CAP * ttl))
                sched.next = now + sched.interval
                sched.interval = min(sched.interval * 2, cap)
        for vlan, qs in self._pending.items():
            # follow-ups queued when a PTR arrived are often answered by the same packet's
            # additional records by now: ask only for what is still missing
            per_vlan.setdefault(vlan, set()).update(
                q
                for q in qs
                if q[1] == dns.rdatatype.PTR
                or not self.store.types_at(vlan, q[0]) & {q[1]}
                or (vlan, q[0], q[1]) in self._urgent
            )
        self._pending.clear()
        for vlan, questions in per_vlan.items():
            link = self.links.by_vlan.get(vlan)
            if link is None or not link.up:
                continue
            fresh = []
            for name, rdtype in sorted(questions, key=lambda q: (q[1], q[0].to_text())):
                key = (vlan, name, rdtype)
                last = self._asked.get(key)
                if last is not None and now - last < const.MDNS_SAME_QUERY_INTERVAL:
                    continue
                self._asked[key] = now
                fresh.append((name, rdtype))
            if fresh:
                self._send_questions(link, fresh, now)
        self._urgent.clear()
        if len(self._asked) > _MAX_TRACKED:
            cutoff = now - 2 * const.MDNS_SAME_QUERY_INTERVAL
            self._asked = {k: t for k, t in self._asked.items() if t > cutoff}

    def _send_questions(self, link: Link, questions: list[QKey], now: float) -> None:
        chunk: list[wire.Question] = []
        for i, (name, rdtype) in enumerate(questions):
            qu = (link.vlan, name, rdtype) in self._urgent
            chunk.append(wire.Question(name, rdtype, unicast=qu))
            if len(chunk) == const.MDNS_MAX_QUESTIONS_PER_PACKET or i == len(questions) - 1:
                self._send_packet(link, chunk, now)
                chunk = []

    def _send_packet(self, link: Link, questions: list[wire.Question], now: float) -> None:
        known: list[wire.Record] = []
        size = 12 + sum(len(q.name.to_wire() or b"") + 4 for q in questions)
        for q in questions:
            if q.rdtype != dns.rdatatype.PTR:
                continue
            for c in self.store.get(link.vlan, q.name, dns.rdatatype.PTR, now):
                if c.remaining > c.ttl / 2:  # RFC 6762 §7.1
                    ttl = int(min(c.remaining, c.ttl))  # pinned (our own): inf
                    rec = wire.Record(q.name, dns.rdatatype.PTR, ttl, c.rdata)
                    cost = len(c.rdata.to_wire() or b"") + 12
                    if size + cost > _MAX_QUERY_BYTES:
                        break
                    size += cost
                    known.append(rec)
        data = wire.query(questions, known)
        if link.has_v4 and self.send(data, link.ifindex, socket.AF_INET):
            self.queries_sent += 1
        if link.has_v6 and self.send(data, link.ifindex, socket.AF_INET6):
            self.queries_sent += 1
