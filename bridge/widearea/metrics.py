"""mdns_gateway_widearea_*: the publisher's counters, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from ..metrics import NS, counter, gauge

if TYPE_CHECKING:
    from .publisher import WideAreaPublisher


class WideAreaCollector(Collector):
    """Registered by ``bridge/app.py`` when ``wide_area:`` is configured."""

    def __init__(self, publisher: WideAreaPublisher) -> None:
        self.publisher = publisher

    def collect(self) -> Iterator[Metric]:
        p = self.publisher
        yield counter(
            f"{NS}_widearea_updates",
            "RFC 2136 UPDATE messages sent, by outcome: ok, timeout, network, servfail, refused, "
            "notauth, badkey, badsig, badtime, unsigned, error",
            p.updates.items(),
            ["result"],
        )
        yield counter(
            f"{NS}_widearea_transfers",
            "TSIG zone transfers (AXFR) for reconciliation, by outcome (as for updates)",
            p.transfers.items(),
            ["result"],
        )
        yield counter(
            f"{NS}_widearea_reconciled_records",
            "Differences zone transfers found: added (missing from the zone), deleted (in the "
            "zone, not held by the gateway)",
            p.reconciled.items(),
            ["action"],
        )
        yield gauge(
            f"{NS}_widearea_records",
            "Records the server holds for the gateway (as last known)",
            len(p.published),
        )
        yield gauge(
            f"{NS}_widearea_desired_records",
            "Records the policies publish (the server's target)",
            len(p.desired),
        )
        yield gauge(
            f"{NS}_widearea_last_success_timestamp_seconds",
            "Unix time of the last UPDATE or zone transfer the server accepted (0: none yet)",
            p.last_success,
        )
        yield gauge(
            f"{NS}_widearea_groups_held_back",
            "Groups (a VLAN's subdomain, the apex) whose last UPDATE the server refused: their "
            "changes wait for the next retry (WIDEAREA_CONFIG_RETRY) while the others go on",
            len(p.held_back),
        )
        yield counter(
            f"{NS}_widearea_instances_dropped",
            "Service instances not followed for publishing: WIDEAREA_MAX_INSTANCES reached",
            p.followed.dropped,
        )
