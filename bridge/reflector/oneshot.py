"""One-shot (legacy unicast) mDNS queries relayed between VLANs, RFC 6762 §6.7.

A one-shot querier (``drill @224.0.0.251 -p 5353``, a small embedded resolver) sends its
question to the group from a port other than 5353 and takes the first unicast reply to its
address and port. The reflector answers it for the other VLANs, under the same policy as the
multicast it reflects (as avahi's reflector does): from the store when the gateway holds records
the querier's VLAN may see, else by sending the question into those VLANs and relaying the
answers as they arrive, while the querier waits (``const.ONESHOT_WAIT``).

This module is the pure part: :class:`Pending`, the bounded table of queriers waiting for
answers, and :func:`reply`, the §6.7 response (ID echoed, question repeated, TTLs capped at
``const.MDNS_LEGACY_TTL``, no cache-flush bit). The policy decisions are the reflector's
(``decide.py``), the sending its shell's.
"""

from __future__ import annotations

import dns.name
import dns.rdatatype

from .. import const
from ..mdns import wire

ANY = dns.rdatatype.ANY

# (question name, type): names hash and compare case-insensitively, as DNS does
Key = tuple[dns.name.Name, int]


class Querier:
    """One one-shot query waiting for answers from other VLANs."""

    __slots__ = (
        "edns_payload",
        "family",
        "id",
        "port",
        "question",
        "relayed",
        "replies",
        "src",
        "until",
        "vlan",
    )

    def __init__(
        self,
        vlan: int,
        src: str,
        port: int,
        family: int,
        qid: int,
        question: wire.Question,
        until: float,
        edns_payload: int = 0,
    ) -> None:
        self.vlan = vlan  # the querier's VLAN index
        self.src = src
        self.port = port
        self.family = family
        self.id = qid
        self.question = question
        self.until = until  # it has given up by then
        self.edns_payload = edns_payload  # what its query's OPT offers (0: no EDNS)
        self.replies = 0
        self.relayed: set[object] = set()  # record identities already sent to it

    def same_query(self, other: Querier) -> bool:
        """A retransmission (the querier's own retry after a lost reply)."""
        return (
            self.src == other.src
            and self.port == other.port
            and self.id == other.id
            and self.vlan == other.vlan
        )


class Pending:
    """Queriers by question, bounded by ``cap`` in all; the expired are swept when one is
    added and whenever the earliest expiry has passed, so a lookup costs a dict probe."""

    __slots__ = ("cap", "count", "next_expiry", "table")

    def __init__(self, cap: int = const.ONESHOT_PENDING_MAX) -> None:
        self.cap = cap
        self.table: dict[Key, list[Querier]] = {}
        self.count = 0
        self.next_expiry = float("inf")

    def __len__(self) -> int:
        return self.count

    def add(self, querier: Querier, now: float) -> bool:
        """Wait for answers to ``querier``'s question; False when the table is full (a
        retransmission renews its querier's wait instead of taking a second place)."""
        self.sweep(now)
        q = querier.question
        key = (q.name, q.rdtype)
        waiting = self.table.get(key)
        if waiting is not None:
            for other in waiting:
                if other.same_query(querier):
                    other.until = max(other.until, querier.until)
                    return True
        if self.count >= self.cap:
            return False
        if waiting is None:
            waiting = self.table[key] = []
        waiting.append(querier)
        self.count += 1
        self.next_expiry = min(self.next_expiry, querier.until)
        return True

    def waiting_for(self, name: dns.name.Name, rdtype: int, now: float) -> list[Querier]:
        """Queriers whose question a record of ``name`` and ``rdtype`` answers."""
        if now >= self.next_expiry:
            self.sweep(now)
        table = self.table
        exact = table.get((name, rdtype))
        anything = table.get((name, ANY))
        if anything is None:
            return exact or []
        return anything if exact is None else exact + anything

    def done(self, querier: Querier) -> None:
        """``querier`` has all the replies it may get."""
        q = querier.question
        key = (q.name, q.rdtype)
        waiting = self.table.get(key)
        if waiting is not None and querier in waiting:
            waiting.remove(querier)
            self.count -= 1
            if not waiting:
                del self.table[key]

    def sweep(self, now: float) -> None:
        if now < self.next_expiry:
            return
        soonest = float("inf")
        for key in list(self.table):
            live = [w for w in self.table[key] if w.until > now]
            self.count -= len(self.table[key]) - len(live)
            if live:
                self.table[key] = live
                soonest = min(soonest, *(w.until for w in live))
            else:
                del self.table[key]
        self.next_expiry = soonest


def reply(
    qid: int, questions: list[wire.Question], answers: list[wire.Record], edns_payload: int = 0
) -> bytes:
    """The unicast response to a one-shot query (RFC 6762 §6.7): its ID, its questions
    repeated, the answers with TTLs of at most ``const.MDNS_LEGACY_TTL`` and no cache-flush
    bit (a one-shot querier is a plain DNS client). Within 512 bytes, or what the query's OPT
    offers up to ``const.DNS_UDP_CLAMP`` with an OPT in the reply (RFC 6891 §7: dig asks with
    EDNS 1232 and a PTR browse's answers rarely fit 512); answers that do not fit are left out
    and TC set, as a DNS server does."""
    qs = [wire.Question(q.name, q.rdtype, q.rdclass, False) for q in questions]
    records = wire.legacy_unicast(answers)
    flags = wire.FLAG_QR | wire.FLAG_AA
    if edns_payload:
        payload = min(edns_payload, const.DNS_UDP_CLAMP)
        limit = payload
    else:
        payload, limit = 0, const.DNS_PLAIN_UDP_LIMIT
    data = wire.encode(wire.Packet(qid, flags, qs, records, edns_payload=payload))
    while len(data) > limit and records:
        records.pop()
        data = wire.encode(
            wire.Packet(qid, flags | wire.FLAG_TC, qs, records, edns_payload=payload)
        )
    return data
