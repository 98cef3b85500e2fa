"""mdns_gateway_widearea_*: the publisher's counters, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .publisher import WideAreaPublisher

NS = "mdns_gateway"


class WideAreaCollector(Collector):
    """Registered by ``bridge/app.py`` when ``wide_area:`` is configured."""

    def __init__(self, publisher: WideAreaPublisher) -> None:
        self.publisher = publisher

    def collect(self) -> Iterator[Metric]:
        p = self.publisher
        c = CounterMetricFamily(
            f"{NS}_widearea_updates",
            "RFC 2136 UPDATE messages sent, by outcome: ok, timeout, network, servfail, refused, "
            "notauth, badkey, badsig, badtime, unsigned, error",
            labels=["result"],
        )
        for result, n in p.updates.items():
            c.add_metric([result], n)
        yield c
        c = CounterMetricFamily(
            f"{NS}_widearea_transfers",
            "TSIG zone transfers (AXFR) for reconciliation, by outcome (as for updates)",
            labels=["result"],
        )
        for result, n in p.transfers.items():
            c.add_metric([result], n)
        yield c
        c = CounterMetricFamily(
            f"{NS}_widearea_reconciled_records",
            "Differences zone transfers found: added (missing from the zone), deleted (in the "
            "zone, not held by the gateway)",
            labels=["action"],
        )
        for action, n in p.reconciled.items():
            c.add_metric([action], n)
        yield c
        g = GaugeMetricFamily(
            f"{NS}_widearea_records", "Records the server holds for the gateway (as last known)"
        )
        g.add_metric([], len(p.published))
        yield g
        g = GaugeMetricFamily(
            f"{NS}_widearea_desired_records", "Records the policies publish (the server's target)"
        )
        g.add_metric([], len(p.desired))
        yield g
        g = GaugeMetricFamily(
            f"{NS}_widearea_last_success_timestamp_seconds",
            "Unix time of the last UPDATE or zone transfer the server accepted (0: none yet)",
        )
        g.add_metric([], p.last_success)
        yield g
        g = GaugeMetricFamily(
            f"{NS}_widearea_groups_held_back",
            "Groups (a VLAN's subdomain, the apex) whose last UPDATE the server refused: their "
            "changes wait for the next retry (WIDEAREA_CONFIG_RETRY) while the others go on",
        )
        g.add_metric([], len(p.held_back))
        yield g
        c = CounterMetricFamily(
            f"{NS}_widearea_instances_dropped",
            "Service instances not followed for publishing: WIDEAREA_MAX_INSTANCES reached",
        )
        c.add_metric([], p.followed.dropped)
        yield c
