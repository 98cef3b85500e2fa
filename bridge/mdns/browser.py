"""Continuous DNS-SD browsing and cache maintenance on every VLAN (RFC 6762 §5.2, §7.1).

What it asks and when is decided here from the store and the clock; sending is a callable.
- Service-type enumeration and every discovered type: first at once, then at doubling
  intervals up to an hour (never longer than 80 % of the PTR TTL we hold).
- Instances without SRV/TXT and SRV targets without addresses: asked for at once.
- A cached record is re-asked at 80/85/90/95 % of its TTL only if ``wanted`` says someone
  wanted it lately (bridge/mdns/interest.py) or it answers one of the browses above; the rest
  expire and are asked on demand if a client asks again (RFC 6762 §5.2 "still interested").
- On-demand questions from DNS cache misses.
A query going out also carries every refresh and browse due within MDNS_QUERY_GATHER_WINDOW.
The same question is never repeated on a VLAN within a second, nor sent when another querier
asked it within the last second with every known answer we would list (§7.3); our known
answers (> half TTL left) are listed for every question (§7.1). A refresh of records a
dual-stack device sent over both families goes out over one, and over the other if its answer
does not come (bridge/mdns/families.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import dns.name
import dns.rdata
import dns.rdatatype

from .. import const
from ..dnssd import SERVICES, is_browse_target
from ..store import Cached, Store
from . import wire
from .families import V4, V6, Families
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
# (vlan, name, type, TTL, now) -> refresh this record? (Interest.wanted, set by bridge/app.py)
Wanted = Callable[[str, dns.name.Name, int, float, float], bool]
HKey = tuple[str, dns.name.Name, int]


def _everything(vlan: str, name: dns.name.Name, rdtype: int, ttl: float, now: float) -> bool:
    return True


def _nobody(name: dns.name.Name, rdtype: int, now: float) -> None:
    """The default ``Browser.heard``: no interest is kept."""


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
        # questions other queriers asked lately, with the rdata they listed as known (§7.3)
        self._heard: dict[HKey, tuple[float, frozenset[dns.rdata.Rdata]]] = {}
        self.wanted: Wanted = _everything
        # told of every question heard on a link (Interest.note, set by bridge/app.py)
        self.heard: Callable[[dns.name.Name, int, float], None] = _nobody
        # refreshes of dual-stack devices' records go over one family (issue 18)
        self.families = Families()
        self.queries_sent = 0
        self.duplicates_suppressed = 0  # questions not sent: another querier just asked them
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

    def on_packet(
        self,
        vlan: str,
        packet: wire.Packet,
        raw: bytes,
        src: str,
        port: int,
        family: int,
        now: float,
    ) -> None:
        """An ingest listener: the questions another querier asked are an interest, and the
        QM ones are remembered for a second (§7.3)."""
        if packet.is_response or not packet.questions:
            return
        for q in packet.questions:
            self.heard(q.name, q.rdtype, now)
        if len(self._heard) > const.MDNS_HEARD_MAX:
            self._heard.clear()
        known: dict[QKey, set[dns.rdata.Rdata]] = {}
        for r in packet.answers:
            known.setdefault((r.name, r.rdtype), set()).add(r.rdata)
        for q in packet.questions:
            if not q.unicast:
                self._heard[(vlan, q.name, q.rdtype)] = (
                    now,
                    frozenset(known.get((q.name, q.rdtype), ())),
                )

    def _duplicate(self, vlan: str, name: dns.name.Name, rdtype: int, now: float) -> bool:
        """§7.3: another querier asked this within the window, listing every answer we
        would list as known: its answers reach us too, so ours would only repeat it."""
        heard = self._heard.get((vlan, name, rdtype))
        if heard is None or now - heard[0] > const.MDNS_DUPLICATE_WINDOW:
            return False
        theirs = heard[1]
        return all(c.rdata in theirs for c in self._known(vlan, name, rdtype, now))

    def _known(self, vlan: str, name: dns.name.Name, rdtype: int, now: float) -> list[Cached]:
        """The answers we hold with more than half their TTL left (RFC 6762 §7.1)."""
        return [c for c in self.store.get(vlan, name, rdtype, now) if c.remaining > c.ttl / 2]

    def _refreshes(
        self, now: float, until: float, per_vlan: dict[str, set[QKey]], refreshing: set[HKey]
    ) -> None:
        """Records due for refresh by ``until`` that are still wanted (or browsed); the
        wanted ones also go into ``refreshing`` (they may go out over one family)."""
        for vlan, name, rdtype in self.store.due_refresh(until):
            if rdtype == _PTR and (vlan, name) in self._browse:
                per_vlan.setdefault(vlan, set()).add((name, rdtype))
                continue
            held = self.store.get(vlan, name, rdtype, now)
            if held and self.wanted(vlan, name, rdtype, max(c.ttl for c in held), now):
                per_vlan.setdefault(vlan, set()).add((name, rdtype))
                refreshing.add((vlan, name, rdtype))

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
        per_vlan: dict[str, set[QKey]] = {}
        refreshing: set[HKey] = set()
        self._refreshes(now, now, per_vlan, refreshing)
        gather = now + const.MDNS_QUERY_GATHER_WINDOW
        browses_due = any(s.next <= now for s in self._browse.values())
        if per_vlan or browses_due or self._pending:
            # a query goes out anyway: it carries what would be due within the window too
            self._refreshes(now, gather, per_vlan, refreshing)
        for (vlan, name), sched in self._browse.items():
            if sched.next <= now or (vlan in per_vlan and sched.next <= gather):
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
        fallbacks = self._fallbacks(now)
        for vlan in fallbacks.keys() - per_vlan.keys():
            per_vlan[vlan] = set()
        for vlan, questions in per_vlan.items():
            link = self.links.by_vlan.get(vlan)
            if link is None or not link.up:
                continue
            fresh: list[tuple[dns.name.Name, int, int | None]] = []
            for name, rdtype in sorted(questions, key=lambda q: (q[1], q[0].to_text())):
                key = (vlan, name, rdtype)
                last = self._asked.get(key)
                if last is not None and now - last < const.MDNS_SAME_QUERY_INTERVAL:
                    continue
                if key not in self._urgent and self._duplicate(vlan, name, rdtype, now):
                    self.duplicates_suppressed += 1
                    self._asked[key] = now  # §7.3: as if we had sent it
                    continue
                self._asked[key] = now
                family = None
                if key in refreshing and key not in self._urgent:
                    family = self.families.choose(
                        key,
                        self.store.sources(vlan, name, rdtype, now),
                        link.has_v4,
                        link.has_v6,
                        now,
                    )
                fresh.append((name, rdtype, family))
            asking = {(n, t) for n, t, _ in fresh}
            for name, rdtype, family in fallbacks.get(vlan, ()):
                if (name, rdtype) not in asking:  # else it goes out again anyway
                    self._asked[(vlan, name, rdtype)] = now
                    fresh.append((name, rdtype, family))
            if fresh:
                self._send_families(link, fresh, now)
        self._urgent.clear()
        if len(self._asked) > _MAX_TRACKED:
            cutoff = now - 2 * const.MDNS_SAME_QUERY_INTERVAL
            self._asked = {k: t for k, t in self._asked.items() if t > cutoff}

    def _fallbacks(self, now: float) -> dict[str, list[tuple[dns.name.Name, int, int | None]]]:
        """Questions asked over one family whose answer did not come: the other family's turn."""
        due = self.families.pending_due(now)
        if not due:
            return {}
        held = {k: self.store.get(k[0], k[1], k[2], now) for k in due}
        out: dict[str, list[tuple[dns.name.Name, int, int | None]]] = {}
        for (vlan, name, rdtype), family in self.families.overdue(now, held):
            if held[(vlan, name, rdtype)]:  # gone meanwhile: expiry as before, nothing to ask
                out.setdefault(vlan, []).append((name, rdtype, family))
        return out

    def _send_families(
        self, link: Link, fresh: list[tuple[dns.name.Name, int, int | None]], now: float
    ) -> None:
        """Questions for every family the link has (None) and for one family, sharing packets:
        each family's query carries the common questions and its own."""
        families = [f for f, up in ((V4, link.has_v4), (V6, link.has_v6)) if up]
        if all(f is None for _, _, f in fresh):
            self._send_questions(link, [(n, t) for n, t, _ in fresh], now, families)
            return
        for family in families:
            mine = [(n, t) for n, t, f in fresh if f is None or f == family]
            if mine:
                self._send_questions(link, mine, now, [family])

    def _send_questions(
        self, link: Link, questions: list[QKey], now: float, families: list[int]
    ) -> None:
        chunk: list[wire.Question] = []
        for i, (name, rdtype) in enumerate(questions):
            qu = (link.vlan, name, rdtype) in self._urgent
            chunk.append(wire.Question(name, rdtype, unicast=qu))
            if len(chunk) == const.MDNS_MAX_QUESTIONS_PER_PACKET or i == len(questions) - 1:
                self._send_packet(link, chunk, now, families)
                chunk = []

    def _send_packet(
        self, link: Link, questions: list[wire.Question], now: float, families: list[int]
    ) -> None:
        known: list[wire.Record] = []
        size = 12 + sum(len(q.name.to_wire() or b"") + 4 for q in questions)
        for q in questions:
            for c in self._known(link.vlan, q.name, q.rdtype, now):  # RFC 6762 §7.1
                ttl = int(min(c.remaining, c.ttl))  # pinned (our own): inf
                rec = wire.Record(q.name, q.rdtype, ttl, c.rdata)
                cost = len(c.rdata.to_wire() or b"") + 12
                if size + cost > _MAX_QUERY_BYTES:
                    break
                size += cost
                known.append(rec)
        data = wire.query(questions, known)
        for family in families:
            if self.send(data, link.ifindex, family):
                self.queries_sent += 1
