"""What the HTTP surface and the gateway's metrics read of the running gateway.

Built by ``bridge/app.py``; the readers get this, never the Gateway, so what they can see is
written here and nowhere else. They only read: the records, the links, the policy in force.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dns.name

from .activity import EventLog, QueryNames
from .announce.records import Wanted
from .config import VlanConfig
from .mdns.links import Links
from .policy import PolicyEngine
from .policy.announcement import ServiceAnnouncement
from .store import Cached, Store

if TYPE_CHECKING:  # chrony is imported only when configured (bridge/app.py)
    from .chrony.health import ServerState


@dataclass(frozen=True, slots=True)
class PolicyStatus:
    """The policy set in force, and whether the last (re)load was rejected."""

    engine: PolicyEngine
    error: str | None  # the rejected set's problems; None when the last load went through
    rejections: int  # policy sets rejected since start-up
    reloads: int | None  # hot reloads that changed the policies; None: no hot reload
    coalesced: int = 0  # SIGHUPs served by the reload of another (one load for a burst)


@dataclass(frozen=True, slots=True)
class Diagnostics:
    """A read-only window on the gateway: configured VLANs, links, records, policy, readiness."""

    vlans: Mapping[str, VlanConfig]
    links: Links
    store: Store
    clock: Callable[[], float]  # the event loop's time, the store's clock
    ready: Callable[[], bool]  # start-up finished (every socket bound)
    policy: Callable[[], PolicyStatus]
    # the record guard's refusals so far: (VLAN, reason) -> records (Ingest.refusals)
    refusals: Callable[[], Mapping[tuple[str, str], int]]
    # why the gateway is up but not ready (the Kubernetes policies not listed yet); None: ready
    not_ready: Callable[[], str | None] = lambda: None
    # what publishes a name we pin (an announcement or a lease), if one does (Publisher.origin)
    published: Callable[[str, dns.name.Name], Wanted | None] = lambda v, n: None
    # the ServiceAnnouncements in force
    announcements: Callable[[], Sequence[ServiceAnnouncement]] = lambda: ()

    wall: Callable[[], float] = field(default=lambda: 0.0)  # wall-clock s (events, first seen)
    events: EventLog | None = None  # recent events and first-seen times (the web page)
    query_names: QueryNames | None = None  # the names asked most per VLAN
    # the reflector's packets so far, (from VLAN, to VLAN or "", outcome) -> packets; None:
    # no reflector
    reflected: Callable[[], Mapping[tuple[str, str, str], int]] | None = None
    # chronyd servers and the VLANs each is advertised on; None: no chrony section
    chrony: Callable[[], Sequence[tuple[ServerState, Sequence[str]]]] | None = None

    def readiness(self) -> tuple[bool, str | None]:
        """(ready, the reason when there is one): what /readyz says, whichever server serves
        it. Before start-up has bound every listener: not ready, no reason."""
        if not self.ready():
            return False, None
        reason = self.not_ready()
        return reason is None, reason

    def origin(self, record: Cached) -> tuple[str, str | None]:
        """Where a record came from: ``("mdns", None)`` (a device announced it), ``("announcement",
        "<name> (<file>, document n)")``, ``("lease", "<lease file>")`` or ``("router", None)``
        (the router's own, e.g. its NTP service)."""
        if record.remaining != float("inf"):
            return "mdns", None
        want = self.published(record.vlan, record.name)
        if want is None:
            return "router", None
        return want.origin, want.source
