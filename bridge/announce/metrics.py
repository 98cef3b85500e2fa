"""mdns_gateway_announce_*: the publisher's registrations and conflicts, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

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
        g = GaugeMetricFamily(
            f"{NS}_registrations",
            "Announcements and lease names per VLAN by state (conflict: a device there holds"
            " the name; dns: a lease name published in DNS only)",
            labels=["state"],
        )
        for state in STATES:
            g.add_metric([state], states.get(state, 0))
        yield g
        yield GaugeMetricFamily(
            f"{NS}_waiting",
            "Announcements on a VLAN with no address yet (none written, no lease of the host)",
            value=len(pub.waiting),
        )
        yield CounterMetricFamily(
            f"{NS}_conflicts",
            "Probes or announcements that found another device holding the name (it keeps it)",
            value=pub.responder.stand_asides,
        )
        yield CounterMetricFamily(
            f"{NS}_yielded",
            "Lease names not published because the device announces the name itself",
            value=pub.yielded,
        )
        sent = CounterMetricFamily(
            f"{NS}_packets_sent", "mDNS packets the publisher sent, by kind", labels=["kind"]
        )
        for kind, n in sorted(pub.responder.sent.items()):
            sent.add_metric([kind], n)
        yield sent
