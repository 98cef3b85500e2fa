"""The reflector's Prometheus collector: its counters, read at scrape time (the packet path
keeps plain integers)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..metrics import NS
from .decide import SPOOFED, Reflector


class ReflectorCollector(Collector):
    """The reflector's counters (issue 4), registered by ``bridge/app.py``."""

    def __init__(self, reflector: Reflector) -> None:
        self.reflector = reflector

    def collect(self) -> Iterator[Metric]:
        r = self.reflector
        c = CounterMetricFamily(
            f"{NS}_reflector_packets",
            "mDNS packets by direction and outcome (to_vlan empty: "
            "decided for every destination at once): reflected, filtered, duplicate, "
            "rate_limited, spoofed, probe, too_big, name_conflict, send_error, error; one-shot "
            "(legacy unicast) queries: oneshot_answered (from the store), oneshot_asked (sent "
            "into the VLANs that may answer), oneshot_full (too many waiting), and per "
            "direction oneshot_relayed (an answer passed to a waiting querier)",
            labels=["from_vlan", "to_vlan", "outcome"],
        )
        # spoofed from 0 on every VLAN: an alert's rate() sees the first ones too
        packets = dict.fromkeys(((v, "", SPOOFED) for v in r.vlans), 0)
        packets.update(r.packets)
        for (src, dst, outcome), n in sorted(packets.items()):
            c.add_metric([src, dst, outcome], n)
        yield c
        c = CounterMetricFamily(
            f"{NS}_reflector_records_removed",
            "Records removed from reflected packets by "
            "direction and reason (filtered, link_local, refused: the record guard's, "
            "no_address: a service whose host has only link-local addresses, duplicate, "
            "too_big, name_conflict)",
            labels=["from_vlan", "to_vlan", "reason"],
        )
        for (src, dst, reason), n in sorted(r.records.items()):
            c.add_metric([src, dst, reason], n)
        yield c
        c = CounterMetricFamily(
            f"{NS}_reflector_loops_detected",
            "Responses showing another reflector on the VLAN "
            "(echo: records we sent came back; cross_vlan: seen on another VLAN just before)",
            labels=["vlan", "kind"],
        )
        # from 0 on every VLAN and kind: an alert's increase() sees the first detection too
        loops = dict.fromkeys(((v, k) for v in r.vlans for k in ("echo", "cross_vlan")), 0)
        loops.update(r.loops)
        for (vlan, kind), n in sorted(loops.items()):
            c.add_metric([vlan, kind], n)
        yield c
        c = CounterMetricFamily(
            f"{NS}_reflector_sent_bytes", "Bytes reflected into each VLAN", labels=["vlan"]
        )
        for vlan, n in sorted(r.bytes_sent.items()):
            c.add_metric([vlan], n)
        yield c
        g = GaugeMetricFamily(
            f"{NS}_reflector_marks", "Recent packet/record marks kept for duplicate suppression"
        )
        g.add_metric([], len(r.marks))
        yield g
        g = GaugeMetricFamily(
            f"{NS}_reflector_oneshot_pending",
            "One-shot (legacy unicast) queriers waiting for answers from other VLANs "
            "(at most ONESHOT_PENDING_MAX)",
        )
        g.add_metric([], len(r.oneshot))
        yield g
