"""The reflection decision: one accepted mDNS datagram in, the datagrams to send out.

:class:`Reflector` is pure: ``handle(vlan, packet, raw, src, port, family, now)`` takes a
packet ingest has parsed and returns one :class:`Output` per destination VLAN (more only when a
smaller MTU forces a split), counting what it did and why. What crosses, and how storms are
prevented, is described in the package docstring (``bridge/reflector/__init__.py``).
"""

from __future__ import annotations

import itertools
import logging
import socket
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dns.name
import dns.rdataclass
import dns.rdatatype

from .. import const
from ..config import ReflectorConfig
from ..dnssd import address_octets, is_link_local, is_services, service_parts
from ..logutil import RateLimitedLog
from ..mdns import wire
from ..mdns.links import Link
from ..mdns.rewrite import Layout, Unsupported, clear_qu, layout, rebuild
from ..policy import PolicyEngine
from ..store import Cached
from .oneshot import Pending, Querier, reply
from .plan import Plan, bits, sources_where
from .suppress import GOODBYE, OURS, Marks, TokenBucket, question_key, record_key

log = logging.getLogger(__name__)
_limited = RateLimitedLog(log)

_PTR = dns.rdatatype.PTR
_SRV = dns.rdatatype.SRV
_A = dns.rdatatype.A
_AAAA = dns.rdatatype.AAAA
_OPT = dns.rdatatype.OPT

_IP4_OVERHEAD = 28  # bytes of IPv4 + UDP header
_IP6_OVERHEAD = 48  # bytes of IPv6 + UDP header

# Outcomes counted in Reflector.packets, keyed (from VLAN, to VLAN or "", outcome).
REFLECTED = "reflected"  # sent into the destination
FILTERED = "filtered"  # policy left nothing for the destination (to "": for every destination)
DUPLICATE = "duplicate"  # already sent into / seen on the destination within the window
RATE_LIMITED = "rate_limited"  # a token bucket was empty (to "": the source's)
SPOOFED = "spoofed"  # source address not on the arrival VLAN's link
PROBE = "probe"  # probes are not reflected
# one-shot (legacy unicast) queries, from a port other than 5353 (oneshot.py): to "" the query
ONESHOT_ANSWERED = "oneshot_answered"  # answered from the store by unicast
ONESHOT_ASKED = "oneshot_asked"  # sent into the VLANs that may answer; the querier waits
ONESHOT_FULL = "oneshot_full"  # the table of waiting queriers is full: not asked
ONESHOT_RELAYED = "oneshot_relayed"  # an answer that arrived, relayed to a waiting querier
TOO_BIG = "too_big"  # a single record does not fit the destination MTU
# a record naming a host or instance that a different device holds on the destination
NAME_CONFLICT = "name_conflict"
SEND_ERROR = "send_error"  # the transport could not send
# reasons a record is removed for every destination (Reflector.records, with FILTERED,
# DUPLICATE, TOO_BIG and NAME_CONFLICT)
LINK_LOCAL = "link_local"  # a link-local address: useless off its link
REFUSED = "refused"  # the record guard refused it at ingest (spoofed owner, off-VLAN address)
NO_ADDRESS = "no_address"  # a service whose host has addresses, none usable off its link
ERROR = "error"  # a bug: the packet raised (logged)


@dataclass(frozen=True, slots=True)
class Output:
    """One datagram to multicast into ``vlan`` (interface ``ifindex``) with ``family``; to
    ``dest`` (address, port) by unicast instead when set (a reply to a one-shot querier)."""

    vlan: str
    ifindex: int
    family: int
    data: bytes
    dest: tuple[str, int] | None = None


# records removed for every destination, each bitmask (over a packet's records) with its reason
_Why = tuple[tuple[int, str], ...]

_Parts = tuple[str, str | None] | None
_SERVICES_PARTS: _Parts = ("", "")  # marks the enumeration name in _PARTS
_PARTS: dict[dns.name.Name, _Parts] = {}  # memo of _parts: most names recur within a packet
_UNKNOWN: Any = object()


def _parts(name: dns.name.Name) -> _Parts:
    """``service_parts`` of a name, or _SERVICES_PARTS for the enumeration name; memoised
    (an instance name is the owner of its SRV and TXT and the target of its PTR)."""
    parts = _PARTS.get(name, _UNKNOWN)
    if parts is _UNKNOWN:
        parts = _SERVICES_PARTS if is_services(name) else service_parts(name)
        if len(_PARTS) >= const.REFLECT_MEMO_MAX:
            _PARTS.clear()
        _PARTS[name] = parts
    return parts


def _link_local(rec: wire.Record) -> bool:
    """An A/AAAA record of a link-local address (tested on its octets, as received)."""
    rdtype = rec.rdtype
    if rdtype != _A and rdtype != _AAAA:
        return False
    raw = rec.digest  # the address as received; None for records we built
    if raw is None:
        raw = address_octets(rec.rdata.address)  # type: ignore[attr-defined]
    return is_link_local(raw)


class Reflector:
    """Pure reflection decisions over VLANs; see the package docstring."""

    def __init__(
        self,
        vlans: Sequence[str],
        config: ReflectorConfig | None = None,
        engine: PolicyEngine | None = None,
        window: float = const.REFLECT_DUP_WINDOW,
        holds: Callable[[str, dns.name.Name], bool] | None = None,
        cached: Callable[[str, dns.name.Name, int, float], Sequence[Cached]] | None = None,
    ) -> None:
        config = config or ReflectorConfig()
        # (VLAN, name): a device on that VLAN holds the name (the store, as its own devices
        # announced it); None: no name-conflict check
        self.holds = holds
        # (VLAN, name, type, now) -> the records the store holds (``Store.get``): the addresses
        # of a service's host that an announcement does not carry; None: the packet only
        self.cached = cached
        self.vlans = tuple(vlans)
        self.config = config
        self.window = window
        self.plan = Plan(self.vlans, engine or PolicyEngine((), self.vlans))
        self._links: list[Link | None] = [None] * len(self.vlans)
        self._mtu: list[int] = [const.REFLECT_DEFAULT_MTU] * len(self.vlans)
        self._up: dict[int, int] = {int(socket.AF_INET): 0, int(socket.AF_INET6): 0}
        self._in = [TokenBucket(config.rate, config.burst) for _ in self.vlans]
        self._out = [TokenBucket(config.rate, config.burst) for _ in self.vlans]
        self.marks = Marks(window, const.REFLECT_MARKS_MAX)
        # learned SRV targets: (VLAN index, host key) -> {(type, instance): expiry}
        self._targets: dict[tuple[int, dns.name.Name], dict[tuple[str, str], float]] = {}
        # services seen announced: (VLAN index, type, instance) -> expiry
        self._homes: dict[tuple[int, str, str], float] = {}
        # counters, read by the metrics collector
        self.packets: Counter[tuple[str, str, str]] = Counter()  # (from, to, outcome)
        self.records: Counter[tuple[str, str, str]] = Counter()  # (from, to, reason) removed
        self.loops: Counter[tuple[str, str]] = Counter()  # (vlan, kind) another reflector
        self.bytes_sent: Counter[str] = Counter()  # to VLAN -> bytes
        self._layout_cache: tuple[bytes, Layout, list[int]] | None = None
        self.oneshot = Pending()  # one-shot queriers waiting for answers
        self._goodbyes = 0  # responses with a goodbye record seen so far (fingerprint epoch)

    # --- inputs that change rarely ----------------------------------------------------------

    def set_policy(self, engine: PolicyEngine) -> None:
        """Fold a new policy set into masks (called on every reload, never per packet)."""
        self.plan = Plan(self.vlans, engine)

    def set_links(self, links: Mapping[str, Link], mtus: Mapping[str, int] | None = None) -> None:
        """The VLAN interfaces as they are now (called after every interface rescan)."""
        up4 = up6 = 0
        for i, name in enumerate(self.vlans):
            link = links.get(name)
            self._links[i] = link
            self._mtu[i] = (mtus or {}).get(name, const.REFLECT_DEFAULT_MTU)
            if link is None or not link.up:
                continue
            if link.has_v4:
                up4 |= 1 << i
            if link.has_v6:
                up6 |= 1 << i
        self._up = {int(socket.AF_INET): up4, int(socket.AF_INET6): up6}

    # --- the packet path --------------------------------------------------------------------

    def handle(
        self,
        vlan: str,
        packet: wire.Packet,
        raw: bytes,
        src: str,
        port: int,
        family: int,
        now: float,
    ) -> list[Output]:
        """The copies of one datagram for the other VLANs (a one-shot query: its unicast reply
        or the question asked elsewhere); ``relay`` is the response's other use."""
        plan = self.plan
        si = plan.index.get(vlan)
        if si is None:
            return []
        response = packet.is_response
        cand = (plan.reach[si] if response else plan.sources_for[si]) & self._up.get(family, 0)
        cand &= ~(1 << si)
        marks = self.marks
        marks.rotate(now)
        keys: list[list[Any]] = []
        goodbye: list[int] = []
        echoed = 0
        if response:  # remember every response's records, to spot other reflectors
            keys, goodbye, echoed = self._arrive(si, vlan, packet, src, family, now)
        if not cand:
            return self._drop(vlan, FILTERED)
        oneshot = not response and port != const.MDNS_PORT
        if not response and not oneshot and packet.authorities:
            return self._drop(vlan, PROBE)
        if not self._source_on_link(si, src):
            _limited.info(
                ("spoofed", vlan, src),
                "reflector: VLAN %s: not reflecting a packet from %s, which is not on that link",
                vlan,
                src,
            )
            return self._drop(vlan, SPOOFED)
        if oneshot:  # never a duplicate: its retransmission wants a reply too
            if not self._in[si].take(now):
                return self._drop(vlan, RATE_LIMITED)
            return self._oneshot(si, vlan, packet, src, port, family, cand, now)

        # the whole packet: seen (arrived, or sent by us) on which VLANs within the window?
        # A goodbye anywhere starts a new generation, so a re-announcement right after one is
        # never taken for a copy of the announcement before it.
        fp = (hash(raw), family, self._goodbyes)
        seen = marks.get(fp)
        covered = 1 << si
        if seen is not None and now - seen[0] < self.window:
            covered |= seen[1]
        marks.cur[fp] = (now, covered)
        if not cand & ~covered:
            return self._drop(vlan, DUPLICATE)
        for d in bits(cand & covered):
            self.packets[(vlan, self.vlans[d], DUPLICATE)] += 1
        cand &= ~covered
        if not self._in[si].take(now):
            return self._drop(vlan, RATE_LIMITED)

        if response:
            outputs = self._response(
                si, vlan, packet, raw, family, cand, keys, goodbye, echoed, now
            )
        else:
            outputs = self._query(si, vlan, packet, raw, family, cand, now)
        if outputs:
            sent = 0
            for out in outputs:
                sent |= 1 << plan.index[out.vlan]
            covered |= sent
            marks.cur[fp] = (now, covered)
            for out in outputs:  # an exact copy of what we sent is recognised at once
                if out.data is not raw:
                    marks.cur[(hash(out.data), family, self._goodbyes)] = (now, covered)
        return outputs

    def sent_failed(self, out: Output, src_vlan: str) -> None:
        """The transport could not send ``out`` (counted; the other destinations go on)."""
        if out.dest is None:  # a unicast reply to a one-shot querier is not a reflected copy
            self.packets[(src_vlan, out.vlan, REFLECTED)] -= 1
        self.packets[(src_vlan, out.vlan, SEND_ERROR)] += 1

    def _drop(self, vlan: str, outcome: str) -> list[Output]:
        self.packets[(vlan, "", outcome)] += 1
        return []

    def _source_on_link(self, si: int, src: str) -> bool:
        link = self._links[si]
        return link is not None and link.on_link(src)

    # --- queries ----------------------------------------------------------------------------

    def _question_mask(self, si: int, q: wire.Question, now: float) -> int:
        plan = self.plan
        name = q.name
        parts = _parts(name)
        if parts is _SERVICES_PARTS:
            return plan.sources_for[si]
        if parts is not None:
            return plan.question_mask(si, parts[0], parts[1])
        # a host name: where it is the target of a service the asker may see
        return sources_where(
            plan.sources_for[si], lambda d: bool(self._learned_mask(d, name, now) >> si & 1)
        )

    def _query(
        self,
        si: int,
        vlan: str,
        packet: wire.Packet,
        raw: bytes,
        family: int,
        cand: int,
        now: float,
    ) -> list[Output]:
        qmasks = [self._question_mask(si, q, now) & cand for q in packet.questions]
        wanted = 0
        for m in qmasks:
            wanted |= m
        if not wanted:
            return self._drop(vlan, FILTERED)
        records = packet.records()
        rmasks, link_local = (
            self._known_answer_masks(si, records, cand, now) if records else ([], 0)
        )
        marks = self.marks
        qkeys = [(question_key(q), family) for q in packet.questions]
        for k in qkeys:
            marks.cur[(k, si)] = (now, 0)
        window = self.window
        outputs: list[Output] = []
        has_qu = any(q.unicast for q in packet.questions)
        truncated = bool(packet.flags & wire.FLAG_TC)  # its continuation is not reflected
        nq = len(qmasks)
        for d in bits(cand):
            dest = self.vlans[d]
            if not wanted >> d & 1:
                self.packets[(vlan, dest, FILTERED)] += 1
                continue
            qs: list[int] = []
            for j, m in enumerate(qmasks):
                if m >> d & 1:
                    seen = marks.get((qkeys[j], d))
                    if seen is None or now - seen[0] >= window:
                        qs.append(j)
            if not qs:
                self.packets[(vlan, dest, DUPLICATE)] += 1
                continue
            rs = [j for j, m in enumerate(rmasks) if m >> d & 1]
            self._count_removed(vlan, dest, rmasks, ((link_local, LINK_LOCAL),), d)
            whole = (
                len(qs) == nq
                and len(rs) == len(rmasks)
                and not truncated
                and not (packet.not_in or packet.meta)
            )
            sent = self._emit(si, d, vlan, packet, raw, family, qs, rs, whole, has_qu, outputs, now)
            if sent:
                for j in qs:
                    marks.cur[(qkeys[j], d)] = (now, OURS)
        return outputs

    def _known_answer_masks(
        self, si: int, records: Sequence[wire.Record], cand: int, now: float
    ) -> tuple[list[int], int]:
        """Known answers go where their VLAN may see them, and also back to the VLAN they live
        on when the asker may see them there (so answers it holds are not sent again)."""
        masks, link_local, _ = self._record_masks(si, records, now, learn=False)
        plan = self.plan
        dests = bits(cand)
        for i, rec in enumerate(records):
            if link_local >> i & 1:
                continue
            parts = _parts(rec.name)
            if parts is _SERVICES_PARTS:
                parts = None
            if parts is not None and parts[1] is None and rec.rdtype == _PTR:
                parts = _parts(rec.rdata.target)  # type: ignore[attr-defined]
            if parts is not None and parts[1] is not None:
                stype, instance = parts[0], parts[1]
                for d in dests:
                    expiry = self._homes.get((d, stype, instance))
                    if (
                        expiry is not None
                        and expiry >= now
                        and plan.record_mask(d, stype, instance) >> si & 1
                    ):
                        masks[i] |= 1 << d
            elif parts is None and rec.rdtype in (_A, _AAAA):
                hk = rec.name
                for d in dests:
                    if self._learned_mask(d, hk, now) >> si & 1:
                        masks[i] |= 1 << d
        return masks, link_local

    # --- one-shot (legacy unicast) queries ----------------------------------------------------

    def _oneshot(
        self,
        si: int,
        vlan: str,
        packet: wire.Packet,
        src: str,
        port: int,
        family: int,
        cand: int,
        now: float,
    ) -> list[Output]:
        """RFC 6762 §6.7 across VLANs (``oneshot.py``): each question the policy lets ``vlan``
        ask elsewhere is answered from the store by unicast; the others are sent into the
        VLANs that may answer them, and the querier waits for their answers (``relay``)."""
        link = self._links[si]
        if link is None:
            return self._drop(vlan, FILTERED)
        answered: list[wire.Question] = []
        answers: list[wire.Record] = []
        ask: list[wire.Question] = []
        for q in packet.questions:
            if q.rdclass != dns.rdataclass.IN:
                continue
            mask = self._question_mask(si, q, now) & ~(1 << si)
            if not mask:
                continue
            found = self._from_store(si, q, mask, now)
            if found:
                answered.append(q)
                answers += found
            else:
                ask.append(q)
        if not answered and not ask:
            return self._drop(vlan, FILTERED)
        outputs: list[Output] = []
        if answered:
            if self._out[si].take(now):
                data = reply(packet.id, answered, answers, packet.edns_payload)
                outputs.append(Output(vlan, link.ifindex, family, data, (src, port)))
                self.packets[(vlan, "", ONESHOT_ANSWERED)] += 1
                self.bytes_sent[vlan] += len(data)
            else:
                self.packets[(vlan, vlan, RATE_LIMITED)] += 1
        questions: list[wire.Question] = []
        until = now + const.ONESHOT_WAIT
        for q in ask:
            querier = Querier(si, src, port, family, packet.id, q, until, packet.edns_payload)
            if self.oneshot.add(querier, now):
                questions.append(wire.Question(q.name, q.rdtype, q.rdclass, False))
            else:
                self.packets[(vlan, "", ONESHOT_FULL)] += 1
                _limited.warning(
                    ("oneshot_full", vlan),
                    "reflector: %d one-shot queries already wait for answers; not asking "
                    "other VLANs for %s (from %s on VLAN %s)",
                    len(self.oneshot),
                    q.name,
                    src,
                    vlan,
                )
        if questions:  # as a multicast querier asks: ID 0, no known answers, no EDNS
            self.packets[(vlan, "", ONESHOT_ASKED)] += 1
            query = wire.Packet(0, 0, questions)
            outputs += self._query(si, vlan, query, wire.encode(query), family, cand, now)
        return outputs

    def _from_store(self, si: int, q: wire.Question, mask: int, now: float) -> list[wire.Record]:
        """The records of the VLANs in ``mask`` that answer ``q`` and that ``si`` may see."""
        cached = self.cached
        if cached is None:
            return []
        out: list[wire.Record] = []
        for d in bits(mask):
            records = [
                wire.Record(c.name, c.rdtype, int(c.remaining), c.rdata)
                for c in cached(self.vlans[d], q.name, q.rdtype, now)
                if c.remaining >= 1
            ]
            if records:
                masks, _, _ = self._record_masks(d, records, now, learn=False, reach=True)
                if self.holds is not None:
                    self._name_conflicts(self.vlans[d], records, masks, 1 << si)
                out += [r for j, r in enumerate(records) if masks[j] >> si & 1]
        return out

    def relay(self, vlan: str, packet: wire.Packet, now: float) -> list[Output]:
        """Pass the answers in a response from ``vlan`` to the one-shot queriers of other VLANs
        waiting for them, by unicast, each answer once, where the policy lets their VLAN see
        it (with the same rules as multicast: link-local, guard, names, reachability). Called
        for every response after ``handle``; costs an integer test while nobody waits."""
        pending = self.oneshot
        if not pending.count or not packet.is_response:
            return []
        si = self.plan.index.get(vlan)
        if si is None:
            return []
        records = packet.records()
        refused = packet.refused
        matched: list[tuple[Querier, int]] = []
        for j, rec in enumerate(records):
            if rec.ttl and not refused >> j & 1:
                for waiting in pending.waiting_for(rec.name, rec.rdtype, now):
                    if waiting.vlan != si:
                        matched.append((waiting, j))
        if not matched:
            return []
        masks, _, _ = self._record_masks(si, records, now, learn=False, skip=refused, reach=True)
        if self.holds is not None:
            dests = 0
            for waiting, _ in matched:
                dests |= 1 << waiting.vlan
            self._name_conflicts(vlan, records, masks, dests)
        per: dict[Querier, list[wire.Record]] = {}
        for waiting, j in matched:
            if masks[j] >> waiting.vlan & 1:
                key = record_key(records[j], 0)
                if key not in waiting.relayed:
                    waiting.relayed.add(key)
                    per.setdefault(waiting, []).append(records[j])
        outputs: list[Output] = []
        for waiting, answers in per.items():
            dest = self.vlans[waiting.vlan]
            link = self._links[waiting.vlan]
            if link is None:
                continue
            if not self._out[waiting.vlan].take(now):
                self.packets[(vlan, dest, RATE_LIMITED)] += 1
                continue
            data = reply(waiting.id, [waiting.question], answers, waiting.edns_payload)
            outputs.append(
                Output(dest, link.ifindex, waiting.family, data, (waiting.src, waiting.port))
            )
            self.packets[(vlan, dest, ONESHOT_RELAYED)] += 1
            self.bytes_sent[dest] += len(data)
            waiting.replies += 1
            if waiting.replies >= const.ONESHOT_REPLIES_MAX:
                pending.done(waiting)
        return outputs

    # --- responses --------------------------------------------------------------------------

    def _record_masks(
        self,
        si: int,
        records: Sequence[wire.Record],
        now: float,
        learn: bool = True,
        skip: int = 0,
        reach: bool = False,
    ) -> tuple[list[int], int, int]:
        """Per record: the VLANs that may see it; a bitmask of link-local records; and with
        ``reach``, a bitmask of the records of services nobody elsewhere can reach (see
        ``_unreachable``), whose masks are cleared. With ``learn`` (responses), remember which
        services and SRV targets live on ``si``. Records in ``skip`` (the record guard's
        refusals, echoes of ours) go nowhere and teach nothing."""
        plan = self.plan
        masks = [0] * len(records)
        hosts: list[int] = []
        targets: dict[dns.name.Name, int] = {}
        homes: dict[tuple[int, str, str], int] = {}  # services announced here -> TTL
        # with reach: (instance, record) for its records here that would cross; its SRV targets
        instances: list[tuple[dns.name.Name, int]] = []
        srvs: dict[dns.name.Name, list[dns.name.Name]] = {}
        for i, rec in enumerate(records):
            if skip and skip >> i & 1:
                continue
            t = rec.rdtype
            parts = _parts(rec.name)
            if parts is _SERVICES_PARTS:
                if t == _PTR:
                    parts = _parts(rec.rdata.target)  # type: ignore[attr-defined]
                    if parts is not None and parts[1] is None:
                        masks[i] = plan.record_mask(si, parts[0], None)
                continue
            if parts is None:
                hosts.append(i)
                continue
            stype, instance = parts
            if instance is None:  # a type or subtype name
                if t == _PTR:
                    tp = _parts(rec.rdata.target)  # type: ignore[attr-defined]
                    if tp is not None and tp[1] is not None and tp[0] == stype:
                        m = masks[i] = plan.record_mask(si, stype, tp[1])
                        if rec.ttl:
                            if learn:
                                homes[(si, stype, tp[1])] = rec.ttl
                            if reach and m:
                                instances.append((rec.rdata.target, i))  # type: ignore[attr-defined]
                else:
                    masks[i] = plan.record_mask(si, stype, None)
                continue
            m = masks[i] = plan.record_mask(si, stype, instance)
            ttl = rec.ttl
            if ttl:
                if learn:
                    homes[(si, stype, instance)] = ttl
                if reach and m:
                    instances.append((rec.name, i))
            if t == _SRV:
                hk = rec.rdata.target  # type: ignore[attr-defined]
                targets[hk] = targets.get(hk, 0) | m
                if ttl:
                    if learn:
                        self._learn(si, hk, stype, instance, ttl, now)
                    if reach and m:
                        srvs.setdefault(rec.name, []).append(hk)
        if homes:  # an instance's PTR, SRV and TXT name it once here
            self._home(homes, now)
        link_local = 0
        usable: dict[dns.name.Name, bool] = {}  # host -> an address here is usable (reach)
        for i in hosts:
            rec = records[i]
            if _link_local(rec):
                link_local |= 1 << i
                if reach and rec.ttl:
                    usable.setdefault(rec.name, False)
                continue
            hk = rec.name
            if reach and rec.ttl and (rec.rdtype == _A or rec.rdtype == _AAAA):
                usable[hk] = True
            masks[i] = targets.get(hk, 0) | self._learned_mask(si, hk, now)
        unreachable = 0
        if instances:
            # the usual announcement: every instance's SRV is here, its host's address too
            for inst, _ in instances:
                hks = srvs.get(inst)
                if hks is None:
                    break
                for hk in hks:
                    if usable.get(hk):
                        break
                else:
                    break
            else:
                return masks, link_local, 0
            unreachable = self._unreachable(self.vlans[si], instances, srvs, usable, now)
            if unreachable:
                for j in bits(unreachable):
                    masks[j] = 0
        return masks, link_local, unreachable

    def _arrive(
        self, si: int, vlan: str, packet: wire.Packet, src: str, family: int, now: float
    ) -> tuple[list[list[Any]], list[int], int]:
        """Mark a response's records as seen on ``si``; report another reflector when every
        one of them was just sent there by us (echo) or just seen on another VLAN. Returns the
        record keys, goodbye flags and a bitmask of the records that are echoes of ours (never
        reflected again: that would pass them on as if they lived on ``si``)."""
        records = packet.records()
        goodbye = [0 if r.ttl else GOODBYE for r in records]
        if GOODBYE in goodbye:
            self._goodbyes += 1
        slots = self.marks.slots
        window = self.window
        echo = cross = echoed = 0
        n = len(self.vlans)
        keys: list[list[Any]] = [slots(record_key(r, family), n) for r in records]
        for j, marks in enumerate(keys):
            here = marks[si]
            if here is not None and now - here[0] < window and here[1] & OURS:
                echo += 1
                echoed |= 1 << j
            else:
                for d, other in enumerate(marks):
                    if (
                        other is not None
                        and d != si
                        and now - other[0] < window
                        and not other[1] & OURS
                    ):
                        cross += 1
                        break
            marks[si] = (now, goodbye[j])
        if keys and echo + cross == len(keys):
            kind = "echo" if echo else "cross_vlan"
            self.loops[(vlan, kind)] += 1
            _limited.warning(
                ("loop", vlan, kind),
                "reflector: another mDNS reflector seems active on VLAN %s: %s "
                "(from %s); suppressing repeats",
                vlan,
                "records we reflected there came back"
                if echo
                else "the same records arrived on another VLAN moments before",
                src,
            )
        return keys, goodbye, echoed

    def _response(
        self,
        si: int,
        vlan: str,
        packet: wire.Packet,
        raw: bytes,
        family: int,
        cand: int,
        keys: list[list[Any]],
        goodbye: list[int],
        echoed: int,
        now: float,
    ) -> list[Output]:
        records = packet.records()
        if not records:
            return self._drop(vlan, FILTERED)
        if echoed == (1 << len(records)) - 1:
            return self._drop(vlan, DUPLICATE)
        refused = packet.refused
        rmasks, link_local, unreachable = self._record_masks(
            si, records, now, learn=not echoed, skip=refused | echoed, reach=True
        )
        gone: _Why = ((refused, REFUSED), (link_local, LINK_LOCAL), (unreachable, NO_ADDRESS))
        clashed = self._name_conflicts(vlan, records, rmasks, cand) if self.holds else None
        n_answers = len(packet.answers)
        wanted = 0
        for j in range(n_answers):
            wanted |= rmasks[j]
        wanted &= cand
        window = self.window
        if not wanted:
            self._count_filtered_records(vlan, cand, rmasks, gone)
            return self._drop(vlan, FILTERED)
        outputs: list[Output] = []
        nr = len(records)
        intact = not (packet.not_in or packet.meta)  # else the records parse dropped go too
        for d in bits(cand):
            dest = self.vlans[d]
            if not wanted >> d & 1:
                why = NAME_CONFLICT if clashed and d in clashed else FILTERED
                self.packets[(vlan, dest, why)] += 1
                continue
            rs: list[int] = []
            dups = 0
            for j, m in enumerate(rmasks):
                if m >> d & 1:
                    seen = keys[j][d]
                    if (
                        seen is not None
                        and now - seen[0] < window
                        and (seen[1] & GOODBYE) == goodbye[j]
                    ):
                        dups += 1
                    else:
                        rs.append(j)
            if not rs or rs[0] >= n_answers:  # rs ascends: no answer left, nothing to say
                self.packets[(vlan, dest, DUPLICATE)] += 1
                continue
            if dups:
                self.records[(vlan, dest, DUPLICATE)] += dups
            self._count_removed(vlan, dest, rmasks, gone, d, clashed)
            if self._emit(
                si,
                d,
                vlan,
                packet,
                raw,
                family,
                [],
                rs,
                len(rs) == nr and intact,
                False,
                outputs,
                now,
            ):
                for j in rs:
                    keys[j][d] = (now, goodbye[j] | OURS)
        return outputs

    # --- output -----------------------------------------------------------------------------

    def _emit(
        self,
        si: int,
        d: int,
        vlan: str,
        packet: wire.Packet,
        raw: bytes,
        family: int,
        qs: list[int],
        rs: list[int],
        whole: bool,
        has_qu: bool,
        outputs: list[Output],
        now: float,
    ) -> bool:
        link = self._links[d]
        dest = self.vlans[d]
        if link is None:
            return False
        limit = min(
            self._mtu[d] - (_IP4_OVERHEAD if family == socket.AF_INET else _IP6_OVERHEAD),
            const.MDNS_MAX_PACKET,
        )
        datas: list[bytes]
        if whole and len(raw) <= limit:
            datas = [clear_qu(raw) if has_qu else raw]
        else:
            datas = self._rebuild(vlan, dest, packet, raw, qs, rs, limit)
            if not datas:
                self.packets[(vlan, dest, TOO_BIG)] += 1
                return False
        bucket = self._out[d]
        sent = False
        for data in datas:
            if not bucket.take(now):
                self.packets[(vlan, dest, RATE_LIMITED)] += 1
                continue
            outputs.append(Output(dest, link.ifindex, family, data))
            self.packets[(vlan, dest, REFLECTED)] += 1
            self.bytes_sent[dest] += len(data)
            sent = True
        return sent

    def _rebuild(
        self,
        vlan: str,
        dest: str,
        packet: wire.Packet,
        raw: bytes,
        qs: list[int],
        rs: list[int],
        limit: int,
    ) -> list[bytes]:
        try:
            cached = self._layout_cache
            if cached is not None and cached[0] is raw:
                where, kept = cached[1], cached[2]
            else:
                where = layout(raw)
                # the records parse kept: not OPT, nor those it dropped (non-IN, meta types)
                kept = [i for i, r in enumerate(where[1]) if wire.keeps(raw, r[1])]
                self._layout_cache = (raw, where, kept)
            chosen = [kept[j] for j in rs]
            if chosen and len(kept) != len(where[1]):  # OPT (EDNS plumbing) stays with records
                chosen = sorted({*chosen, *(i for i, r in enumerate(where[1]) if r[2] == _OPT)})
            datas, dropped = rebuild(raw, where, qs, chosen, limit)
        except (Unsupported, IndexError):
            datas, dropped = self._rebuild_dnspython(packet, qs, rs, limit)
        if dropped:
            self.records[(vlan, dest, TOO_BIG)] += dropped
        return datas

    @staticmethod
    def _rebuild_dnspython(
        packet: wire.Packet, qs: list[int], rs: list[int], limit: int
    ) -> tuple[list[bytes], int]:
        """Slow path for records whose rdata holds names we do not re-point ourselves."""
        records = packet.records()
        na, nn = len(packet.answers), len(packet.authorities)
        questions = [
            wire.Question(q.name, q.rdtype, q.rdclass, False)
            for q in (packet.questions[j] for j in qs)
        ]
        answers = [records[j] for j in rs if j < na]
        auth = [records[j] for j in rs if na <= j < na + nn]
        extra = [records[j] for j in rs if j >= na + nn]
        data = wire.encode(
            wire.Packet(packet.id, packet.flags & ~wire.FLAG_TC, questions, answers, auth, extra)
        )
        if len(data) <= limit:
            return [data], 0
        out: list[bytes] = []
        dropped = 0
        items: list[tuple[int, object]] = [(0, q) for q in questions]
        items += [(1, r) for r in answers] + [(2, r) for r in auth] + [(3, r) for r in extra]
        cur: list[tuple[int, object]] = []

        def enc(chunk: list[tuple[int, object]]) -> bytes:
            secs: list[list[object]] = [[], [], [], []]
            for s, it in chunk:
                secs[s].append(it)
            return wire.encode(wire.Packet(packet.id, packet.flags & ~wire.FLAG_TC, *secs))  # type: ignore[arg-type]

        for item in items:
            trial = enc([*cur, item])
            if len(trial) <= limit:
                cur.append(item)
                continue
            if not cur:
                dropped += 1
                continue
            out.append(enc(cur))
            cur = [item] if len(enc([item])) <= limit else []
            if not cur:
                dropped += 1
        if cur:
            out.append(enc(cur))
        return out, dropped

    def _count_removed(
        self,
        vlan: str,
        dest: str,
        rmasks: list[int],
        why: _Why,
        d: int,
        clashed: dict[int, int] | None = None,
    ) -> None:
        conflicts = clashed.get(d, 0) if clashed else 0
        for j, m in enumerate(rmasks):
            if not m >> d & 1:
                if conflicts >> j & 1:
                    continue  # counted by _name_conflicts
                reason = FILTERED
                for mask, because in why:
                    if mask >> j & 1:
                        reason = because
                        break
                self.records[(vlan, dest, reason)] += 1

    def _unreachable(
        self,
        vlan: str,
        instances: list[tuple[dns.name.Name, int]],
        srvs: dict[dns.name.Name, list[dns.name.Name]],
        usable: dict[dns.name.Name, bool],
        now: float,
    ) -> int:
        """Issue 19: a service whose host has addresses and none usable off its link (only
        link-local ones, which never cross) is not reflected: its PTR, SRV and TXT would let
        clients elsewhere discover a device they can never reach. The host's addresses are
        those in the packet (``usable``), else the store's (``cached``); with none known, the
        service crosses (its addresses are still to come, as the DNS side decides too).
        Goodbyes always cross. Returns the bits of the records (``instances``) kept out."""
        cached = self.cached
        records: dict[dns.name.Name, int] = {}  # instance -> its records' bits
        for inst, i in instances:
            records[inst] = records.get(inst, 0) | 1 << i
        out = 0
        for inst, which in records.items():
            hosts = srvs.get(inst)
            if hosts is None:  # the SRV is not in this packet: the store may know it
                if cached is None:
                    continue
                hosts = [c.rdata.target for c in cached(vlan, inst, _SRV, now)]  # type: ignore[attr-defined]
                if not hosts:
                    continue
            if any(self._host_reachable(vlan, h, usable, now) for h in hosts):
                continue
            out |= which
            _limited.info(
                ("no_address", vlan),
                "reflector: VLAN %s: not reflecting %s: its host has only link-local "
                "addresses, which other VLANs cannot use",
                vlan,
                inst,
            )
        return out

    def _host_reachable(
        self, vlan: str, host: dns.name.Name, usable: dict[dns.name.Name, bool], now: float
    ) -> bool:
        """``host`` on ``vlan`` has an address usable off its link, or none known yet."""
        here = usable.get(host)
        if here:
            return True
        known = here is not None
        cached = self.cached
        if cached is not None:
            for rdtype in (_A, _AAAA):
                for c in cached(vlan, host, rdtype, now):
                    known = True
                    if not is_link_local(address_octets(c.rdata.address)):  # type: ignore[attr-defined]
                        return True
        return not known

    def _name_conflicts(
        self, vlan: str, records: Sequence[wire.Record], rmasks: list[int], cand: int
    ) -> dict[int, int] | None:
        """RFC 6762 §9: a host or instance name is unique on its link, not across VLANs. A
        record is not passed into a VLAN where a different device holds its host name (owner
        or SRV target) or its instance name: the VLAN's clients would reach the wrong device.
        An instance whose SRV target clashes goes whole (PTR, SRV, TXT). Clears those bits of
        ``rmasks``; returns, per destination index, the records removed (None: none).
        Each distinct name is looked up once per destination (a packet names a host and an
        instance several times)."""
        holds = self.holds
        assert holds is not None
        # per record: the names it carries, and per name the destinations it would enter
        named: list[tuple[dns.name.Name, ...]] = []
        wanted: dict[dns.name.Name, int] = {}
        for j, rec in enumerate(records):
            m = rmasks[j] & cand
            names: tuple[dns.name.Name, ...] = ()
            if m:
                parts = _parts(rec.name)
                if parts is None:
                    names = (rec.name,)  # a host's records
                elif parts is _SERVICES_PARTS:
                    pass
                elif parts[1] is None:  # a type's PTR names its instance
                    if rec.rdtype == _PTR:
                        names = (rec.rdata.target,)  # type: ignore[attr-defined]
                elif rec.rdtype == _SRV:
                    names = (rec.name, rec.rdata.target)  # type: ignore[attr-defined]
                else:
                    names = (rec.name,)
                for name in names:
                    wanted[name] = wanted.get(name, 0) | m
            named.append(names)
        vlans = self.vlans
        taken: dict[dns.name.Name, int] = {}  # name -> destinations where it is held
        for name, m in wanted.items():
            for d in bits(m):
                if holds(vlans[d], name):
                    taken[name] = taken.get(name, 0) | 1 << d
                    _limited.warning(
                        ("name_conflict", vlan, vlans[d], name),
                        "reflector: not passing records of %s from VLAN %s into VLAN %s: a "
                        "different device there holds that name (rename one of them)",
                        name,
                        vlan,
                        vlans[d],
                    )
        if not taken:
            return None
        # an instance whose SRV target is taken goes whole: its instance name is out too
        for names in named:
            if len(names) == 2 and names[1] in taken:
                taken[names[0]] = taken.get(names[0], 0) | taken[names[1]]
        clashed: dict[int, int] = {}
        for j, names in enumerate(named):
            out = 0
            for name in names:
                out |= taken.get(name, 0)
            out &= rmasks[j]
            if out:
                rmasks[j] &= ~out
                for d in bits(out):
                    clashed[d] = clashed.get(d, 0) | 1 << j
        for d, removed in clashed.items():
            self.records[(vlan, vlans[d], NAME_CONFLICT)] += bin(removed).count("1")
        return clashed

    def _count_filtered_records(self, vlan: str, cand: int, rmasks: list[int], why: _Why) -> None:
        for d in bits(cand):
            self._count_removed(vlan, self.vlans[d], rmasks, why, d)

    # --- SRV targets --------------------------------------------------------------------------

    def _learn(
        self, si: int, hk: dns.name.Name, stype: str, instance: str, ttl: int, now: float
    ) -> None:
        key = (si, hk)
        services = self._targets.get(key)
        if services is None:
            if len(self._targets) >= _TARGETS_MAX:
                self._sweep_targets(now)
            services = self._targets[key] = {}
        skey = (stype, instance)
        if skey not in services and len(services) >= _SERVICES_PER_HOST:
            del services[next(iter(services))]
        services[skey] = now + _hold(ttl)

    def _home(self, seen: dict[tuple[int, str, str], int], now: float) -> None:
        homes = self._homes
        if len(homes) >= _INSTANCES_MAX:
            _trim(homes, lambda e: e < now, _INSTANCES_MAX)
        for key, ttl in seen.items():
            homes[key] = now + _hold(ttl)

    def _sweep_targets(self, now: float) -> None:
        _trim(self._targets, lambda s: max(s.values(), default=0) < now, _TARGETS_MAX)

    def _learned_mask(self, si: int, hk: dns.name.Name, now: float) -> int:
        services = self._targets.get((si, hk))
        if not services:
            return 0
        mask = 0
        for (stype, instance), expiry in services.items():
            if expiry >= now:
                mask |= self.plan.record_mask(si, stype, instance)
        return mask

    def learned_targets(self) -> int:
        return len(self._targets)


_SERVICES_PER_HOST = const.REFLECT_SERVICES_PER_HOST
_INSTANCES_MAX = const.REFLECT_INSTANCES_MAX
_TARGETS_MAX = const.REFLECT_TARGETS_MAX
_TARGET_MIN_TTL = const.REFLECT_TARGET_MIN_TTL
_MAX_TTL = float(const.STORE_MAX_TTL)


def _hold(ttl: int) -> float:
    """How long a learned service or target is remembered: its TTL, within bounds."""
    return min(max(float(ttl), _TARGET_MIN_TTL), _MAX_TTL)


def _trim(table: dict[Any, Any], expired: Callable[[Any], bool], cap: int) -> None:
    """Make room in a full table: drop expired entries, then the oldest, down to half of
    ``cap``, so that the O(n) pass runs once per cap/2 insertions, not once per insertion."""
    for key in [k for k, v in table.items() if expired(v)]:
        del table[key]
    excess = len(table) - cap // 2
    if excess > 0:
        for key in list(itertools.islice(table, excess)):
            del table[key]
