"""A small RFC 6762 responder for the router's own records, one registration set per VLAN.

The core (:class:`Responder`) is pure: a registration, a received packet or the clock goes in
(``now`` is passed), packets to send come out as :class:`Outgoing`. :class:`ResponderShell`
is the asyncio glue: it feeds ingest packets in, sends what comes out, and wakes the core
when its next timer is due.

A registration is one host name (A/AAAA) plus the service instances that point at it
(PTR, SRV, TXT and the ``_services._dns-sd._udp`` enumeration PTR). Its life:

* probing (§8.1): three QU queries for its unique names, 250 ms apart (after a random
  0-250 ms start), the proposed records in the authority section. A response naming one of
  them with other data is a conflict: the name is renamed ("router (2)" for an instance,
  "router-2" for a host) and probing starts over. Simultaneous probes are tie-broken (§8.2).
  Fifteen conflicts in ten seconds slow each further attempt to one per five seconds.
  A registration made with ``rename=False`` (an operator's announcement, a lease's host
  name) is never renamed: the device that holds the name keeps it, the registration stands
  aside (state "conflict", nothing published) and probes again once a minute.
* announcing (§8.3): unsolicited responses, the unique records with the cache-flush bit,
  at 0, 1 and 3 s.
* answering (§6): multicast, or unicast for QU questions (§5.4) and legacy unicast queries
  (§6.7), with known-answer suppression (§7.1), the additional records of RFC 6763 §12, NSEC
  for the types we do not have (§6.1), at most one multicast of a record per second per link.
* a conflicting announcement from elsewhere once established sends it back to probing (§9).
* withdrawal and shutdown: goodbye packets, the records with TTL 0 (§10.1); shared records
  that another registration on the link still publishes are not said goodbye to.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import re
import socket
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NSEC
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV

from .. import const
from ..dnssd import SERVICES, host_name, instance_name, service_type_name, subtype_name
from . import wire
from .links import Links

log = logging.getLogger(__name__)

IN = dns.rdataclass.IN
A, AAAA, PTR, SRV, TXT, NSEC, ANY = (
    dns.rdatatype.A,
    dns.rdatatype.AAAA,
    dns.rdatatype.PTR,
    dns.rdatatype.SRV,
    dns.rdatatype.TXT,
    dns.rdatatype.NSEC,
    dns.rdatatype.ANY,
)
_RESPONSE_FLAGS = wire.FLAG_QR | wire.FLAG_AA

PROBING, ANNOUNCING, ANNOUNCED, CONFLICT = "probing", "announcing", "announced", "conflict"

RecordKey = tuple[dns.name.Name, int, dns.rdata.Rdata]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One service instance to publish, e.g. ``router._ntp._udp.local``."""

    instance: str  # the wanted instance label (renamed on conflict)
    stype: str  # "_ntp._udp"
    port: int
    txt: tuple[bytes, ...] = ()
    priority: int = 0
    weight: int = 0
    subtypes: tuple[str, ...] = ()  # "_universal": <sub>._sub.<type>.local PTR (RFC 6763 §7.1)


@dataclass(frozen=True, slots=True)
class Spec:
    """What one registration publishes: a host name, its addresses, services pointing at it."""

    host: str  # the wanted host label, e.g. "router" for router.local (renamed on conflict)
    addresses: tuple[str, ...]
    services: tuple[ServiceSpec, ...] = ()
    ttl: int = const.OWN_RECORD_TTL
    # False: on a conflict the other device keeps the name; we stand aside and retry later
    rename: bool = True


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A packet to send on a VLAN: multicast (``dest`` None) or unicast to ``dest``."""

    vlan: str
    data: bytes
    dest: tuple[str, int] | None = None
    family: int | None = None  # for unicast: the family of ``dest``


def next_instance_label(label: str) -> str:
    """RFC 6763 §9 style: "router" -> "router (2)" -> "router (3)"."""
    m = re.fullmatch(r"(.*) \((\d+)\)", label)
    if m:
        return f"{m.group(1)} ({int(m.group(2)) + 1})"
    return f"{label} (2)"


def next_host_label(label: str) -> str:
    """ "router" -> "router-2" -> "router-3" (host names stay DNS labels)."""
    m = re.fullmatch(r"(.*)-(\d+)", label)
    if m:
        return f"{m.group(1)}-{int(m.group(2)) + 1}"
    return f"{label}-2"


def build_records(spec: Spec, host_label: str, instance_labels: list[str]) -> list[wire.Record]:
    """Every record of a registration; unique ones carry the cache-flush bit."""
    ttl = spec.ttl
    host = host_name(host_label)
    out: list[wire.Record] = []
    for addr in spec.addresses:
        if ":" in addr:
            out.append(
                wire.Record(host, AAAA, ttl, dns.rdtypes.IN.AAAA.AAAA(IN, AAAA, addr), IN, True)
            )
        else:
            out.append(wire.Record(host, A, ttl, dns.rdtypes.IN.A.A(IN, A, addr), IN, True))
    for svc, label in zip(spec.services, instance_labels, strict=True):
        stype = service_type_name(svc.stype)
        inst = instance_name(label, svc.stype)
        out.append(wire.Record(stype, PTR, ttl, dns.rdtypes.ANY.PTR.PTR(IN, PTR, inst)))
        out.append(wire.Record(SERVICES, PTR, ttl, dns.rdtypes.ANY.PTR.PTR(IN, PTR, stype)))
        for sub in svc.subtypes:
            out.append(
                wire.Record(
                    subtype_name(sub, svc.stype), PTR, ttl, dns.rdtypes.ANY.PTR.PTR(IN, PTR, inst)
                )
            )
        out.append(
            wire.Record(
                inst,
                SRV,
                ttl,
                dns.rdtypes.IN.SRV.SRV(IN, SRV, svc.priority, svc.weight, svc.port, host),
                IN,
                True,
            )
        )
        out.append(
            wire.Record(
                inst, TXT, ttl, dns.rdtypes.ANY.TXT.TXT(IN, TXT, list(svc.txt) or [b""]), IN, True
            )
        )
    return out


def _key(rec: wire.Record) -> RecordKey:
    return (rec.name, rec.rdtype, rec.rdata)


def _canonical(rdata: dns.rdata.Rdata) -> bytes:
    return rdata.to_digestable()


class _Registration:
    __slots__ = (
        "announced_once",
        "announces",
        "conflicts",
        "host_label",
        "instance_labels",
        "key",
        "next_at",
        "probes",
        "records",
        "spec",
        "state",
        "stood_aside",
        "vlan",
    )

    def __init__(self, vlan: str, key: str, spec: Spec, now: float, start: float) -> None:
        self.vlan = vlan
        self.key = key
        self.spec = spec
        self.host_label = spec.host
        self.instance_labels = [s.instance for s in spec.services]
        self.state = PROBING
        self.probes = 0
        self.announces = 0
        self.announced_once = False  # something went out: withdrawal needs goodbyes
        self.next_at = now + start
        self.conflicts: deque[float] = deque(maxlen=const.MDNS_CONFLICT_LIMIT)
        self.stood_aside = False  # a device held one of its names (rename=False)
        self.records: list[wire.Record] = []
        self.rebuild()

    def rebuild(self) -> None:
        self.records = build_records(self.spec, self.host_label, self.instance_labels)

    @property
    def unique_names(self) -> set[dns.name.Name]:
        return {r.name for r in self.records if r.cache_flush}

    def owns(self, name: dns.name.Name) -> bool:
        return any(r.cache_flush and r.name == name for r in self.records)

    @property
    def live(self) -> bool:
        """Answers for its names may go out (probing is over, no device holds them)."""
        return self.state in (ANNOUNCING, ANNOUNCED)


class Responder:
    """The pure core. Every method returns the packets to send now; ``tick`` sends timed ones."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self._regs: dict[tuple[str, str], _Registration] = {}
        # delayed multicast answers: (when, seq, vlan, answers, additional)
        self._pending: list[tuple[float, int, str, list[wire.Record], list[wire.Record]]] = []
        self._seq = 0
        # VLAN -> every owner name its registrations publish (None: rebuild on next use), so
        # a packet that names none of ours costs a few set look-ups however many we publish
        self._names: dict[str, set[dns.name.Name]] | None = None
        self._last_multicast: dict[tuple[str, RecordKey], float] = {}
        # (vlan, key) whose names changed or which finished probing: tell the owner
        self.listeners: list[Callable[[str, str], None]] = []
        self.sent: Counter[str] = Counter()  # kind -> packets: probe, announce, answer, goodbye
        self.conflicts = 0
        self.stand_asides = 0  # conflicts where the device kept the name (rename=False)
        self.dropped_answers = 0

    # --- registrations -------------------------------------------------------------------

    def publish(self, vlan: str, key: str, spec: Spec, now: float) -> list[Outgoing]:
        """Publish or update a registration (idempotent for an unchanged spec)."""
        reg = self._regs.get((vlan, key))
        if reg is not None and reg.spec == spec:
            return []
        wanted_same = (
            reg is not None
            and reg.spec.host == spec.host
            and [s.instance for s in reg.spec.services] == [s.instance for s in spec.services]
        )
        if reg is None or not wanted_same:
            fresh = self.withdraw(vlan, key, now) if reg is not None else []
            start = self.rng.uniform(0.0, const.MDNS_PROBE_INTERVAL)
            self._regs[(vlan, key)] = _Registration(vlan, key, spec, now, start)
            self._names = None
            return fresh
        # same names, other data (TXT, addresses, port, priority): re-announce, no re-probe
        old = reg.records
        reg.spec = spec
        reg.rebuild()
        self._names = None
        out: list[Outgoing] = []
        if reg.announced_once:
            gone = self._unshared(
                vlan, [r for r in old if _key(r) not in {_key(n) for n in reg.records}], reg
            )
            out += self._goodbye(vlan, gone)
        if reg.live:
            reg.state, reg.announces, reg.next_at = ANNOUNCING, 0, now
            out += self.tick(now)
        return out

    def withdraw(self, vlan: str, key: str, now: float) -> list[Outgoing]:
        """Stop publishing a registration: goodbyes for what was announced."""
        reg = self._regs.pop((vlan, key), None)
        if reg is None:
            return []
        self._names = None
        for rec in reg.records:
            self._last_multicast.pop((vlan, _key(rec)), None)
        if not reg.announced_once:
            return []
        return self._goodbye(vlan, self._unshared(vlan, reg.records, None))

    def withdraw_all(self, now: float) -> list[Outgoing]:
        out: list[Outgoing] = []
        for vlan, key in list(self._regs):
            out += self.withdraw(vlan, key, now)
        return out

    def registrations(self, vlan: str | None = None) -> list[tuple[str, str]]:
        return [k for k in self._regs if vlan is None or k[0] == vlan]

    def state(self, vlan: str, key: str) -> str | None:
        reg = self._regs.get((vlan, key))
        return reg.state if reg else None

    def labels(self, vlan: str, key: str) -> tuple[str, list[str]] | None:
        """(host label, instance labels) in use now, after any conflict renames."""
        reg = self._regs.get((vlan, key))
        return (reg.host_label, list(reg.instance_labels)) if reg else None

    def records(self, vlan: str, key: str) -> list[wire.Record]:
        reg = self._regs.get((vlan, key))
        return list(reg.records) if reg else []

    # --- time ------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        times = [r.next_at for r in self._regs.values() if r.state != ANNOUNCED]
        if self._pending:
            times.append(self._pending[0][0])
        return min(times) if times else None

    def tick(self, now: float) -> list[Outgoing]:
        out: list[Outgoing] = []
        for reg in list(self._regs.values()):
            if reg.state == ANNOUNCED or reg.next_at > now:
                continue
            if reg.state == CONFLICT:  # the device may have gone: ask again
                reg.state, reg.probes = PROBING, 0
            if reg.state == PROBING:
                if reg.probes < const.MDNS_PROBE_COUNT:
                    out.append(self._probe(reg))
                    reg.probes += 1
                    reg.next_at = now + const.MDNS_PROBE_INTERVAL
                    continue
                reg.state, reg.announces = ANNOUNCING, 0
                reg.stood_aside = False
                log.info(
                    "VLAN %s: %s established (%s)",
                    reg.vlan,
                    reg.key,
                    ", ".join(str(n) for n in sorted(reg.unique_names)),
                )
                self._notify(reg)
            if reg.state == ANNOUNCING:
                out.append(self._announce(reg, now))
                reg.announces += 1
                if reg.announces >= const.MDNS_ANNOUNCE_COUNT:
                    reg.state, reg.next_at = ANNOUNCED, float("inf")
                else:
                    reg.next_at = now + const.MDNS_ANNOUNCE_FIRST_INTERVAL * 2 ** (
                        reg.announces - 1
                    )
        while self._pending and self._pending[0][0] <= now:
            _, _, vlan, answers, additional = heapq.heappop(self._pending)
            answers, additional = (
                [
                    r
                    for r in recs
                    if self._still_live(vlan, r)
                    and self._may_multicast(vlan, r, now, const.MDNS_MULTICAST_MIN_INTERVAL)
                ]
                for recs in (answers, additional)
            )
            if answers:
                out.append(self._multicast_answer(vlan, answers, additional, now))
        return out

    # --- received packets ----------------------------------------------------------------

    def handle(
        self,
        vlan: str,
        packet: wire.Packet,
        src: str,
        port: int,
        family: int,
        on_link: bool,
        now: float,
    ) -> list[Outgoing]:
        names = self._names_on(vlan)
        if not names or not (
            any(q.name in names for q in packet.questions)
            or any(r.name in names for r in packet.answers)
            or any(r.name in names for r in packet.additionals)
            or any(r.name in names for r in packet.authorities)
        ):
            return []
        regs = [r for (v, _), r in self._regs.items() if v == vlan]
        if packet.is_response:
            return self._check_response(regs, packet, now)
        if packet.authorities:
            self._tie_break(regs, packet, now)
        return self._answer(vlan, regs, packet, src, port, family, on_link, now)

    def _names_on(self, vlan: str) -> set[dns.name.Name]:
        if self._names is None:
            index: dict[str, set[dns.name.Name]] = {}
            for (v, _), reg in self._regs.items():
                index.setdefault(v, set()).update(r.name for r in reg.records)
            self._names = index
        return self._names.get(vlan, set())

    def _check_response(
        self, regs: list[_Registration], packet: wire.Packet, now: float
    ) -> list[Outgoing]:
        out: list[Outgoing] = []
        for rec in packet.answers + packet.additionals:
            if rec.rdtype == NSEC:
                continue
            for reg in regs:
                if not reg.owns(rec.name):
                    continue
                ours = {_key(r) for r in reg.records}
                if _key(rec) in ours:
                    continue
                if reg.state == PROBING:
                    out += self._conflict(reg, rec.name, now)
                elif reg.state == CONFLICT:
                    continue
                elif rec.ttl > 0 and any(
                    r.name == rec.name and r.rdtype == rec.rdtype and r.cache_flush
                    for r in reg.records
                ):
                    # §9: someone else claims our unique record: probe again to find out
                    log.warning(
                        "VLAN %s: %s %s announced by another host; probing again",
                        reg.vlan,
                        rec.name,
                        _tname(rec.rdtype),
                    )
                    reg.state, reg.probes = PROBING, 0
                    reg.next_at = now + self.rng.uniform(0.0, const.MDNS_PROBE_INTERVAL)
        return out

    def _tie_break(self, regs: list[_Registration], packet: wire.Packet, now: float) -> None:
        """§8.2: simultaneous probes for one name: the lexicographically later data wins."""
        for reg in regs:
            if reg.state != PROBING:
                continue
            for name in reg.unique_names:
                theirs = sorted(
                    (int(r.rdclass), r.rdtype, _canonical(r.rdata))
                    for r in packet.authorities
                    if r.name == name
                )
                if not theirs:
                    continue
                ours = sorted(
                    (int(IN), r.rdtype, _canonical(r.rdata)) for r in reg.records if r.name == name
                )
                if ours < theirs:
                    log.info(
                        "VLAN %s: lost a probe tie-break for %s; probing again in 1 s",
                        reg.vlan,
                        name,
                    )
                    reg.probes = 0
                    reg.next_at = now + const.MDNS_PROBE_DEFER
                    break

    def _conflict(self, reg: _Registration, name: dns.name.Name, now: float) -> list[Outgoing]:
        """Rename the conflicting name; what we had announced under the old one says goodbye
        (only our own data: the other host's records under that name stay in caches)."""
        self.conflicts += 1
        reg.conflicts.append(now)
        old = str(name)
        if not reg.spec.rename:
            return self._stand_aside(reg, name, now)
        if name == host_name(reg.host_label):
            reg.host_label = next_host_label(reg.host_label)
            new = reg.host_label
        else:
            for i, label in enumerate(reg.instance_labels):
                if instance_name(label, reg.spec.services[i].stype) == name:
                    reg.instance_labels[i] = next_instance_label(label)
                    new = reg.instance_labels[i]
                    break
            else:
                return []
        old_records = reg.records
        reg.rebuild()
        self._names = None
        reg.probes = 0
        busy = (
            len(reg.conflicts) >= const.MDNS_CONFLICT_LIMIT
            and now - reg.conflicts[0] < const.MDNS_CONFLICT_WINDOW
        )
        reg.next_at = now + (
            const.MDNS_CONFLICT_BACKOFF
            if busy
            else self.rng.uniform(0.0, const.MDNS_PROBE_INTERVAL)
        )
        log.warning("VLAN %s: name conflict for %s; renamed to %r", reg.vlan, old, new)
        self._notify(reg)
        if not reg.announced_once:
            return []
        fresh = {_key(r) for r in reg.records}
        return self._goodbye(
            reg.vlan,
            self._unshared(reg.vlan, [r for r in old_records if _key(r) not in fresh], reg),
        )

    def _stand_aside(self, reg: _Registration, name: dns.name.Name, now: float) -> list[Outgoing]:
        """A device on the link holds the name: it keeps it; we publish nothing and ask again
        in a minute (one probe round a minute: never a rename storm)."""
        if not reg.stood_aside:  # logged once; the minute's retries only when they change
            reg.stood_aside = True
            log.warning(
                "VLAN %s: %s is held by another device there; it keeps the name, %s stands"
                " aside and probes again every %.0f s (rename one of them)",
                reg.vlan,
                name,
                reg.key,
                const.MDNS_STAND_ASIDE_RETRY,
            )
        self.stand_asides += 1
        reg.state, reg.probes = CONFLICT, 0
        reg.next_at = now + const.MDNS_STAND_ASIDE_RETRY
        self._notify(reg)
        if not reg.announced_once:
            return []
        reg.announced_once = False  # so _unshared does not count it as still publishing
        return self._goodbye(reg.vlan, self._unshared(reg.vlan, reg.records, None))

    def _answer(
        self,
        vlan: str,
        regs: list[_Registration],
        packet: wire.Packet,
        src: str,
        port: int,
        family: int,
        on_link: bool,
        now: float,
    ) -> list[Outgoing]:
        live = [r for r in regs if r.live]
        if not live or not packet.questions:
            return []
        mine = {_key(r): r for reg in live for r in reg.records}
        known = {_key(r): r.ttl for r in packet.answers}
        legacy = port != const.MDNS_PORT
        probe = bool(packet.authorities)
        answers: list[wire.Record] = []
        unicast_wanted = legacy
        for q in packet.questions:
            if q.rdclass not in (IN, dns.rdataclass.ANY):
                continue
            for key, rec in mine.items():
                if rec.name != q.name or (q.rdtype != ANY and q.rdtype != rec.rdtype):
                    continue
                if not legacy and known.get(key, -1) >= rec.ttl / 2:
                    continue  # §7.1 known-answer suppression
                if rec not in answers:
                    answers.append(rec)
            if q.unicast:
                unicast_wanted = True
        negative = self._negative(live, packet, mine)
        if not answers and not negative:
            return []
        additional = self._additional(live, answers, mine) + negative
        if legacy or (
            unicast_wanted
            and all(
                now - self._last_multicast.get((vlan, _key(r)), -1e9) < r.ttl / 4 for r in answers
            )
        ):
            if not on_link:
                return []
            self.sent["answer_unicast"] += 1
            reply = wire.Packet(
                packet.id if legacy else 0,
                _RESPONSE_FLAGS,
                list(packet.questions) if legacy else [],
                wire.legacy_unicast(answers) if legacy else answers,
                [],
                wire.legacy_unicast(additional) if legacy else additional,
            )
            return [Outgoing(vlan, wire.encode(reply), (src, port), family)]
        shared = any(not r.cache_flush for r in answers)
        if probe or not shared:
            limit = (
                const.MDNS_PROBE_DEFENSE_INTERVAL if probe else const.MDNS_MULTICAST_MIN_INTERVAL
            )
            answers = [r for r in answers if self._may_multicast(vlan, r, now, limit)]
            if not answers and not negative:
                return []
            return [self._multicast_answer(vlan, answers, additional, now)]
        lo, hi = const.MDNS_TC_DELAY if packet.flags & wire.FLAG_TC else const.MDNS_SHARED_DELAY
        if len(self._pending) >= const.MDNS_RESPONDER_MAX_PENDING:
            self.dropped_answers += 1
            return []
        self._seq += 1
        heapq.heappush(
            self._pending, (now + self.rng.uniform(lo, hi), self._seq, vlan, answers, additional)
        )
        return []

    def _negative(
        self, live: list[_Registration], packet: wire.Packet, mine: dict[RecordKey, wire.Record]
    ) -> list[wire.Record]:
        """§6.1: a question for a unique name of ours, of a type we lack: NSEC says so."""
        out: list[wire.Record] = []
        for q in packet.questions:
            if q.rdtype == ANY or not any(reg.owns(q.name) for reg in live):
                continue
            if not any(k[0] == q.name and k[1] == q.rdtype for k in mine):
                nsec = self._nsec(q.name, mine)
                if nsec not in out:
                    out.append(nsec)
        return out

    @staticmethod
    def _nsec(name: dns.name.Name, mine: dict[RecordKey, wire.Record]) -> wire.Record:
        types = sorted({k[1] for k in mine if k[0] == name})
        ttl = next((r.ttl for k, r in mine.items() if k[0] == name), const.OWN_RECORD_TTL)
        rdata = dns.rdata.from_text(
            IN, NSEC, " ".join([name.to_text()] + [_tname(t) for t in types])
        )
        return wire.Record(name, NSEC, ttl, rdata, IN, True)

    @staticmethod
    def _additional(
        live: list[_Registration], answers: list[wire.Record], mine: dict[RecordKey, wire.Record]
    ) -> list[wire.Record]:
        """RFC 6763 §12: SRV/TXT/addresses after a PTR; addresses after an SRV; §6.2 A+AAAA."""
        wanted: list[tuple[dns.name.Name, tuple[int, ...]]] = []
        for rec in answers:
            if rec.rdtype == PTR and rec.name != SERVICES:
                inst = rec.rdata.target  # type: ignore[attr-defined]
                wanted.append((inst, (SRV, TXT)))
                for k in mine:
                    if k[0] == inst and k[1] == SRV:
                        wanted.append((k[2].target, (A, AAAA)))  # type: ignore[attr-defined]
            elif rec.rdtype == SRV:
                wanted.append((rec.rdata.target, (A, AAAA)))  # type: ignore[attr-defined]
            elif rec.rdtype in (A, AAAA):
                wanted.append((rec.name, (A, AAAA)))
        out: list[wire.Record] = []
        for name, types in wanted:
            for key, rec in mine.items():
                if key[0] == name and key[1] in types and rec not in answers and rec not in out:
                    out.append(rec)
        names = {r.name for r in out if r.cache_flush}
        for name in sorted(names):
            out.append(Responder._nsec(name, mine))
        return out

    # --- packets ---------------------------------------------------------------------------

    def _probe(self, reg: _Registration) -> Outgoing:
        self.sent["probe"] += 1
        questions = [wire.Question(n, ANY, IN, True) for n in sorted(reg.unique_names)]
        authority = [
            wire.Record(r.name, r.rdtype, r.ttl, r.rdata, IN, False)
            for r in reg.records
            if r.cache_flush
        ]
        return Outgoing(reg.vlan, wire.encode(wire.Packet(0, 0, questions, [], authority, [])))

    def _announce(self, reg: _Registration, now: float) -> Outgoing:
        self.sent["announce"] += 1
        reg.announced_once = True
        for rec in reg.records:
            self._last_multicast[(reg.vlan, _key(rec))] = now
        return Outgoing(
            reg.vlan, wire.encode(wire.Packet(0, _RESPONSE_FLAGS, [], list(reg.records)))
        )

    def _multicast_answer(
        self, vlan: str, answers: list[wire.Record], additional: list[wire.Record], now: float
    ) -> Outgoing:
        self.sent["answer"] += 1
        for rec in answers:
            self._last_multicast[(vlan, _key(rec))] = now
        return Outgoing(
            vlan, wire.encode(wire.Packet(0, _RESPONSE_FLAGS, [], answers, [], additional))
        )

    def _goodbye(self, vlan: str, records: Iterable[wire.Record]) -> list[Outgoing]:
        recs = [wire.Record(r.name, r.rdtype, 0, r.rdata, IN, r.cache_flush) for r in records]
        if not recs:
            return []
        self.sent["goodbye"] += 1
        return [Outgoing(vlan, wire.encode(wire.Packet(0, _RESPONSE_FLAGS, [], recs)))]

    # --- helpers ---------------------------------------------------------------------------

    def _may_multicast(self, vlan: str, rec: wire.Record, now: float, limit: float) -> bool:
        return now - self._last_multicast.get((vlan, _key(rec)), -1e9) >= limit

    def _still_live(self, vlan: str, rec: wire.Record) -> bool:
        """A delayed answer's record is still ours (NSEC: its name still is)."""
        for (v, _), reg in self._regs.items():
            if v != vlan or not reg.live:
                continue
            if rec.rdtype == NSEC and reg.owns(rec.name):
                return True
            if any(_key(r) == _key(rec) for r in reg.records):
                return True
        return False

    def _unshared(
        self, vlan: str, records: Iterable[wire.Record], keep: _Registration | None
    ) -> list[wire.Record]:
        """Records no other announced registration on the VLAN still publishes."""
        others = {
            _key(r)
            for (v, _), reg in self._regs.items()
            if v == vlan and reg is not keep and reg.announced_once
            for r in reg.records
        }
        if keep is not None:
            others |= {_key(r) for r in keep.records}
        return [r for r in records if _key(r) not in others]

    def _notify(self, reg: _Registration) -> None:
        for listener in self.listeners:
            try:
                listener(reg.vlan, reg.key)
            except Exception:  # the owner's bug must not stop the responder
                log.exception("responder listener failed")


def _tname(rdtype: int) -> str:
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))


# --- asyncio glue --------------------------------------------------------------------------

Sender = Callable[[bytes, int, int, "tuple[str, int] | None"], bool]  # MdnsTransport.send


class ResponderShell:
    """Moves the core's packets: ingest packets in, sends out, a timer for the core's clock."""

    def __init__(self, core: Responder, links: Links, send: Sender) -> None:
        self.core = core
        self.links = links
        self.send = send
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

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
        """An ``Ingest.listeners`` entry; ``now`` is ingest's, on the event loop's clock."""
        if self._loop is None:
            return
        link = self.links.by_vlan.get(vlan)
        on_link = link is not None and link.on_link(src)
        self.emit(self.core.handle(vlan, packet, src, port, family, on_link, now))

    def emit(self, out: list[Outgoing]) -> None:
        for o in out:
            link = self.links.by_vlan.get(o.vlan)
            if link is None or not link.up:
                continue
            if o.dest is not None:
                self.send(o.data, link.ifindex, o.family or socket.AF_INET, o.dest)
                continue
            if link.has_v4:
                self.send(o.data, link.ifindex, socket.AF_INET, None)
            if link.has_v6:
                self.send(o.data, link.ifindex, socket.AF_INET6, None)
        self._schedule()

    def _schedule(self) -> None:
        if self._loop is None:
            return
        when = self.core.next_deadline()
        if self._timer is not None:
            if when is not None and abs(self._timer.when() - when) < 1e-6:
                return
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self._loop.call_at(max(when, self._loop.time()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        try:
            self.emit(self.core.tick(self.now()))
        except Exception:  # a timer must survive the core's bugs
            log.exception("responder tick failed")
            self._schedule()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
