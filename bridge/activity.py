"""What happened lately on the VLANs, for the web page: recent events and the names asked most.

Bounded and cheap by construction: the event ring holds ``EVENTS_MAX`` events; services
announced and gone come from the store's change channel (a type check per change of content,
nothing per refresh); drops, refusals and other reflectors come from the components' own
counters, read once per ``EVENTS_POLL_INTERVAL`` (nothing added to the packet path); the queried
names are counted from query packets only, ``QUERY_NAMES_MAX`` names per VLAN.
Time is passed in (wall-clock seconds: what a person reads on the page).
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import dns.name
import dns.rdata
import dns.rdatatype

from . import const, dnssd
from .mdns import wire

_PTR = dns.rdatatype.PTR
OTHER = "(other names)"  # the queried names counted once a VLAN's table is full

# a counter reader: (VLAN, reason) -> count so far
CounterReader = Callable[[], Mapping[tuple[str, str], int]]


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened: ``kind`` is announced, goodbye, expired, evicted, withdrawn,
    refused, dropped or another_reflector."""

    seq: int
    at: float  # wall-clock seconds
    kind: str
    vlan: str
    text: str


def _instance(rdata: dns.rdata.Rdata) -> str:
    target: dns.name.Name = rdata.target  # type: ignore[attr-defined]
    parts = dnssd.service_parts(target)
    return parts[1] if parts and parts[1] is not None else target.to_text()


# a service's event, its text not made yet: (type PTR owner, its rdata, why it went or None)
_Service = tuple[dns.name.Name, dns.rdata.Rdata, str | None]


def _service_text(name: dns.name.Name, rdata: dns.rdata.Rdata, why: str | None) -> str:
    stype = name.to_text(omit_final_dot=True).removesuffix(".local")
    return f"{_instance(rdata)} ({stype}) " + ("announced" if why is None else f"gone: {why}")


class EventLog:
    """The last ``EVENTS_MAX`` events, and when each service instance was first seen.

    ``removal`` tells why the store removes the record it is telling about (the store sets
    ``Store.removing``); ``counters`` are read by :meth:`poll`, and each rise becomes one event.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        removal: Callable[[], str],
        counters: Mapping[str, CounterReader],
        size: int = const.EVENTS_MAX,
    ) -> None:
        self.clock = clock
        self.removal = removal
        self.counters = counters
        # (seq, at, kind, VLAN, text): a service's text is made when read (recent), not per
        # announcement: two dnspython to_text calls and an f-string were 66k of the 947k
        # instructions an announcement cost ingest (callgrind, pure build)
        self.events: deque[tuple[int, float, str, str, str | _Service]] = deque(maxlen=size)
        self.seq = 0  # events so far; a reader compares it to know whether anything is new
        # VLAN -> instance name -> wall-clock time first seen; as many as the store holds
        # service-type PTR records (bounded by the store), removed with the record. A dict per
        # VLAN, not (VLAN, name) tuple keys, and one float per second (the first reading of
        # the clock in it, shared by every instance seen within it: they come in bursts):
        # 10,000 services, tracemalloc, loadtest.memprofile: 1.04 -> 0.42 MB
        self._first_seen: dict[str, dict[dns.name.Name, float]] = {}
        self._second: tuple[int, float] = (-1, 0.0)  # the current second and its float
        self._last: dict[str, dict[tuple[str, str], int]] = {
            kind: dict(read()) for kind, read in counters.items()
        }

    def add(self, kind: str, vlan: str, text: str | _Service) -> None:
        self.seq += 1
        self.events.append((self.seq, self.clock(), kind, vlan, text))

    def on_record(
        self, vlan: str, name: dns.name.Name, rdtype: int, rdata: dns.rdata.Rdata, added: bool
    ) -> None:
        """A store change: a service-type PTR (not a subtype's) is an instance coming or going."""
        if rdtype != _PTR or len(name.labels) != 4 or not dnssd.is_browse_target(name):
            return
        target: dns.name.Name = rdata.target  # type: ignore[attr-defined]
        if added:
            names = self._first_seen.get(vlan)
            if names is None:
                names = self._first_seen[vlan] = {}
            if target not in names:
                names[target] = self._now()
            self.add("announced", vlan, (name, rdata, None))
        else:
            names = self._first_seen.get(vlan)
            if names is not None:
                names.pop(target, None)
            why = self.removal()
            self.add(why, vlan, (name, rdata, why))

    def first_seen(self, vlan: str, name: dns.name.Name) -> float | None:
        """When the instance ``name`` was first seen on ``vlan`` (wall clock), if it is held."""
        names = self._first_seen.get(vlan)
        return names.get(name) if names is not None else None

    def _now(self) -> float:
        """The clock, as one shared float per second (see ``_first_seen``)."""
        now = self.clock()
        second, shared = self._second
        if int(now) == second:
            return shared
        self._second = (int(now), now)
        return now

    def poll(self) -> None:
        """Every rise of a drop, refusal or loop counter since the last poll, as one event."""
        for kind, read in self.counters.items():
            last = self._last[kind]
            now = read()
            for (vlan, reason), n in sorted(now.items()):
                before = last.get((vlan, reason), 0)
                if n > before:
                    self.add(kind, vlan, f"{n - before} {_UNITS[kind]} ({reason})")
            self._last[kind] = dict(now)

    def recent(self, limit: int = const.EVENTS_MAX) -> list[Event]:
        """The newest events first."""
        out: list[Event] = []
        for seq, at, kind, vlan, text in reversed(self.events):
            if len(out) >= limit:
                break
            out.append(
                Event(seq, at, kind, vlan, text if isinstance(text, str) else _service_text(*text))
            )
        return out


_UNITS = {
    "dropped": "mDNS packet(s) dropped",
    "refused": "record(s) refused",
    "another_reflector": "packet(s) of another reflector seen",
}


class QueryNames:
    """The names asked most per VLAN in mDNS queries (an ingest packet listener).

    A VLAN counts at most ``QUERY_NAMES_MAX`` names; a new name after that is counted as
    ``OTHER``, so a client asking random names costs a fixed table."""

    def __init__(self, limit: int = const.QUERY_NAMES_MAX) -> None:
        self.limit = limit
        self.counts: dict[str, Counter[dns.name.Name]] = {}

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
        if packet.is_response:
            return
        counts = self.counts.get(vlan)
        if counts is None:
            counts = self.counts[vlan] = Counter()
        for q in packet.questions:
            if q.name in counts or len(counts) < self.limit:
                counts[q.name] += 1
            else:
                counts[_OTHER_NAME] += 1

    def top(self, vlan: str, n: int = const.WEB_TOP_N) -> list[tuple[str, int]]:
        counts = self.counts.get(vlan, Counter())
        best = heapq.nlargest(n, counts.items(), key=lambda kv: kv[1])
        return [(OTHER if k is _OTHER_NAME else k.to_text(), v) for k, v in best]

    def vlans(self) -> Iterator[str]:
        return iter(self.counts)


_OTHER_NAME = dns.name.from_text("other.invalid.")
