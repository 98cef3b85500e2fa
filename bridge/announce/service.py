"""The asyncio shell: announcements and lease names -> the responder and pinned store records.

:class:`Publisher` owns one :class:`~bridge.mdns.responder.Responder` (apart from chrony's)
and the store records it pins, so a name published twice (an announcement whose host is also
a lease's) is pinned once and withdrawn once. ``bridge/app.py`` feeds it: the announcements of
the policies directory, the lease hosts of the lease watcher, ingest's packets (``shell``), and
a :meth:`sync` after each interface scan (a VLAN that went away is withdrawn).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable

import dns.name
import dns.rdata
import dns.rdatatype

from .. import const
from ..dnssd import host_name
from ..mdns import wire
from ..mdns.links import Links
from ..mdns.responder import ANNOUNCED, ANNOUNCING, Responder, ResponderShell, Sender
from ..policy.announcement import ServiceAnnouncement
from ..store import Pin, Store
from .records import LeaseHost, RegKey, Wanted, dns_records, wanted

log = logging.getLogger(__name__)

_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


class Publisher:
    """Publishes ServiceAnnouncements and DHCP lease host names on their VLANs."""

    def __init__(
        self,
        store: Store,
        links: Links,
        send: Sender,
        clock: Callable[[], float],
        publish_leases: bool = False,
    ) -> None:
        self.store = store
        self.links = links
        self.clock = clock
        self.publish_leases = publish_leases  # lease names by mDNS too (dhcp.publish_mdns)
        self.responder = Responder()
        self.shell = ResponderShell(self.responder, links, send)
        self.responder.listeners.append(lambda vlan, key: self.sync())
        self.announcements: tuple[ServiceAnnouncement, ...] = ()
        self.leases: tuple[LeaseHost, ...] = ()
        self.wants: dict[RegKey, Wanted] = {}
        self.waiting: list[tuple[str, ServiceAnnouncement]] = []  # no address yet
        self._published: set[RegKey] = set()  # registrations handed to the responder
        self._pinned: set[Pin] = set()
        self._origins: dict[tuple[str, dns.name.Name], Wanted] = {}  # pinned names' publishers
        self._yielded: set[tuple[str, str]] = set()  # lease names a device's mDNS holds now
        self.yielded = 0  # lease names left to the device's own mDNS name (counted each time)
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- inputs ------------------------------------------------------------------------------

    def set_announcements(self, announcements: Iterable[ServiceAnnouncement]) -> None:
        self.announcements = tuple(announcements)
        log.info("announcements in force: %d", len(self.announcements))
        self.sync()

    def set_leases(self, leases: Iterable[LeaseHost]) -> None:
        self.leases = tuple(leases)
        self.sync()

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
        """An ``Ingest.listeners`` entry: nothing to do (one test) while nothing is published."""
        if self._published:
            self.shell.on_packet(vlan, packet, raw, src, port, family, now)

    # --- life cycle --------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.shell.start(loop)
        self.sync()

    def stop(self) -> None:
        """Goodbyes for everything announced, and the pinned records gone."""
        if self._loop is not None:
            self.shell.emit(self.responder.withdraw_all(self.clock()))
        self._published.clear()
        self._origins = {}
        self._apply_store(set())
        self.shell.close()
        self._loop = None

    # --- publishing --------------------------------------------------------------------------

    def sync(self) -> None:
        """Bring the responder and the store in line with the inputs (idempotent)."""
        if self._loop is None:
            return
        now = self.clock()
        up = [vlan for vlan, link in self.links.by_vlan.items() if link.up]
        self.wants, self.waiting = wanted(self.announcements, self.leases, up, self.publish_leases)
        by_mdns = {key for key, w in self.wants.items() if w.mdns}
        out = []
        for key in sorted(self._published - by_mdns):
            out += self.responder.withdraw(key[0], key[1], now)
        for key in sorted(by_mdns):
            out += self.responder.publish(key[0], key[1], self.wants[key].spec, now)
        self._published = by_mdns
        self.shell.emit(out)
        records: set[Pin] = set()
        origins: dict[tuple[str, dns.name.Name], Wanted] = {}
        for (vlan, reg), want in self.wants.items():
            if want.mdns:
                if self.responder.state(vlan, reg) not in (ANNOUNCING, ANNOUNCED):
                    continue  # probing, or a device holds the name: not ours (yet)
                labels = self.responder.labels(vlan, reg)
                if labels is None:
                    continue
                host, instances = labels
            else:
                if self._device_holds(vlan, want.spec.host, now):
                    continue
                host, instances = want.spec.host, []
            for name, rdtype, rdata in dns_records(want.spec, host, instances):
                records.add((vlan, name, rdtype, rdata))
                origins.setdefault((vlan, name), want)
        self._origins = origins
        self._apply_store(records)

    def _device_holds(self, vlan: str, host: str, now: float) -> bool:
        """A device announces the lease's host name itself (by mDNS): its name wins."""
        name = host_name(host)
        held = any(
            c.remaining != float("inf")
            for rdtype in _ADDRESS_TYPES
            for c in self.store.get(vlan, name, rdtype, now)
        )
        key = (vlan, host)
        if held and key not in self._yielded:
            self._yielded.add(key)
            self.yielded += 1
            log.info(
                "VLAN %s: %s is announced by its device over mDNS; its lease name is not"
                " published (the device's own name wins)",
                vlan,
                name,
            )
        elif not held:
            self._yielded.discard(key)
        return held

    def _apply_store(self, records: set[Pin]) -> None:
        now = self.clock() if self._loop is not None else 0.0
        self.store.repin(self._pinned, records, const.OWN_RECORD_TTL, now)
        self._pinned = records

    # --- reading -----------------------------------------------------------------------------

    def states(self) -> Counter[str]:
        """Registrations by state (probing, announcing, announced, conflict), and "dns" for
        lease names published in DNS only."""
        out: Counter[str] = Counter()
        for (vlan, reg), want in self.wants.items():
            state = self.responder.state(vlan, reg) if want.mdns else "dns"
            out[state or "probing"] += 1
        return out

    def origin(self, vlan: str, name: dns.name.Name) -> Wanted | None:
        """What publishes ``name`` on ``vlan`` now (an announcement or a lease), if we do."""
        return self._origins.get((vlan, name))
