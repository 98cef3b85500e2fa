"""The reflector's Prometheus collector: its counters, read at scrape time (the packet path
keeps plain integers)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from ..metrics import NS, counter, gauge
from .decide import SPOOFED, Reflector


class ReflectorCollector(Collector):
    """The reflector's counters (issue 4), registered by ``bridge/app.py``."""

    def __init__(self, reflector: Reflector) -> None:
        self.reflector = reflector

    def collect(self) -> Iterator[Metric]:
        r = self.reflector
        # spoofed from 0 on every VLAN: an alert's rate() sees the first ones too
        packets = dict.fromkeys(((v, "", SPOOFED) for v in r.vlans), 0)
        packets.update(r.packets)
        yield counter(
            f"{NS}_reflector_packets",
            "mDNS packets by direction and outcome (to_vlan empty: "
            "decided for every destination at once): reflected, filtered, duplicate, "
            "rate_limited, spoofed, probe, too_big, name_conflict, send_error, error; one-shot "
            "(legacy unicast) queries: oneshot_answered (from the store), oneshot_asked (sent "
            "into the VLANs that may answer), oneshot_full (too many waiting), and per "
            "direction oneshot_relayed (an answer passed to a waiting querier)",
            packets,
            ["from_vlan", "to_vlan", "outcome"],
        )
        yield counter(
            f"{NS}_reflector_records_removed",
            "Records removed from reflected packets by "
            "direction and reason (filtered, link_local, refused: the record guard's, "
            "no_address: a service whose host has only link-local addresses, duplicate, "
            "too_big, name_conflict)",
            r.records,
            ["from_vlan", "to_vlan", "reason"],
        )
        # from 0 on every VLAN and kind: an alert's increase() sees the first detection too
        loops = dict.fromkeys(((v, k) for v in r.vlans for k in ("echo", "cross_vlan")), 0)
        loops.update(r.loops)
        yield counter(
            f"{NS}_reflector_loops_detected",
            "Responses showing another reflector on the VLAN "
            "(echo: records we sent came back; cross_vlan: seen on another VLAN just before)",
            loops,
            ["vlan", "kind"],
        )
        yield counter(
            f"{NS}_reflector_sent_bytes",
            "Bytes reflected into each VLAN",
            r.bytes_sent,
            ["vlan"],
        )
        yield gauge(
            f"{NS}_reflector_marks",
            "Recent packet/record marks kept for duplicate suppression",
            len(r.marks),
        )
        yield gauge(
            f"{NS}_reflector_oneshot_pending",
            "One-shot (legacy unicast) queriers waiting for answers from other VLANs "
            "(at most ONESHOT_PENDING_MAX)",
            len(r.oneshot),
        )
