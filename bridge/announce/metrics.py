"""mdns_gateway_announce_*: the publisher's registrations and conflicts, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from ..metrics import counter, gauge
from .service import Publisher

NS = "mdns_gateway_announce"
STATES = ("probing", "announcing", "announced", "conflict", "dns")


class AnnounceCollector:
    """Reads a :class:`Publisher` (announcements and lease names) at scrape time."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    def collect(self) -> Iterator[Metric]:
        pub = self.publisher
        states = pub.states()
        yield gauge(
            f"{NS}_registrations",
            "Announcements and lease names per VLAN by state (conflict: a device there holds"
            " the name; dns: a lease name published in DNS only)",
            ((state, states.get(state, 0)) for state in STATES),
            ["state"],
        )
        yield gauge(
            f"{NS}_waiting",
            "Announcements on a VLAN with no address yet (none written, no lease of the host)",
            len(pub.waiting),
        )
        yield counter(
            f"{NS}_conflicts",
            "Probes or announcements that found another device holding the name (it keeps it)",
            pub.responder.stand_asides,
        )
        yield counter(
            f"{NS}_yielded",
            "Lease names not published because the device announces the name itself",
            pub.yielded,
        )
        yield counter(
            f"{NS}_packets_sent",
            "mDNS packets the publisher sent, by kind",
            pub.responder.sent,
            ["kind"],
        )
