"""Every Prometheus metric, defined once, read from the components' own counters at scrape time.

The hot paths keep plain integers (a Counter increment per packet costs more than the answer);
this collector turns them into metrics named mdns_gateway_<subsystem>_<name>_<unit|total>
with few, low-cardinality labels (vlan, view, transport, reason, rcode).
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from .app import Gateway

NS = "mdns_gateway"


class GatewayCollector(Collector):
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    def collect(self) -> Iterator[Metric]:
        gw = self.gw
        stats = gw.server.stats

        c = CounterMetricFamily(f"{NS}_dns_queries", "DNS queries received", labels=["transport"])
        for transport in ("udp", "tcp"):
            c.add_metric([transport], stats.queries[transport])
        yield c
        c = CounterMetricFamily(
            f"{NS}_dns_cache_hits", "Queries answered from pre-rendered responses"
        )
        c.add_metric([], stats.cache_hits)
        yield c
        c = CounterMetricFamily(f"{NS}_dns_slow_path", "Queries that needed parsing/rendering")
        c.add_metric([], stats.slow)
        yield c
        c = CounterMetricFamily(
            f"{NS}_dns_responses", "Slow-path responses by rcode", labels=["rcode"]
        )
        for rcode, n in sorted(stats.rcodes.items()):
            c.add_metric([rcode], n)
        yield c
        c = CounterMetricFamily(
            f"{NS}_dns_malformed", "Queries that could not be parsed", labels=["reason"]
        )
        for reason, n in sorted(stats.malformed.items()):
            c.add_metric([reason], n)
        yield c
        c = CounterMetricFamily(f"{NS}_dns_truncated", "UDP replies sent with TC=1")
        c.add_metric([], stats.truncated)
        yield c
        c = CounterMetricFamily(
            f"{NS}_dns_send_failures",
            "Replies that could not be sent, and TCP connections refused over the limit",
        )
        c.add_metric([], stats.dropped)
        yield c
        c = CounterMetricFamily(f"{NS}_dns_tcp_connections", "TCP connections accepted")
        c.add_metric([], stats.tcp_connections)
        yield c
        od = gw.ondemand
        c = CounterMetricFamily(
            f"{NS}_dns_ondemand_lookups", "Cache misses that asked mDNS", labels=["outcome"]
        )
        c.add_metric(["answered"], od.answered)
        c.add_metric(["timeout"], od.timeouts)
        yield c
        g = GaugeMetricFamily(f"{NS}_dns_ondemand_pending", "Cache misses waiting for mDNS")
        g.add_metric([], od.pending)
        yield g
        c = CounterMetricFamily(
            f"{NS}_dns_unusable_services",
            "Services withheld from a unicast answer: their target had no usable address",
        )
        c.add_metric([], gw.resolver.unusable_services)
        yield c

        ing = gw.ingest
        c = CounterMetricFamily(
            f"{NS}_mdns_packets_received", "mDNS packets accepted", labels=["vlan", "kind"]
        )
        for (vlan, kind), n in sorted(ing.received.items()):
            c.add_metric([vlan, kind], n)
        yield c
        c = CounterMetricFamily(
            f"{NS}_mdns_packets_dropped", "mDNS packets rejected", labels=["vlan", "reason"]
        )
        for (vlan, reason), n in sorted(ing.dropped.items()):
            c.add_metric([vlan, reason], n)
        yield c
        c = CounterMetricFamily(
            f"{NS}_mdns_records_received", "mDNS records applied to the store", labels=["vlan"]
        )
        for vlan, n in sorted(ing.records.items()):
            c.add_metric([vlan], n)
        yield c
        c = CounterMetricFamily(f"{NS}_mdns_queries_sent", "mDNS query packets we sent")
        c.add_metric([], gw.browser.queries_sent)
        yield c
        c = CounterMetricFamily(f"{NS}_mdns_send_errors", "mDNS sends that failed")
        c.add_metric([], gw.transport.send_errors)
        yield c
        c = CounterMetricFamily(
            f"{NS}_mdns_packets_malformed",
            "mDNS packets that could not be parsed, by the parser's reason (also counted as "
            "dropped with reason malformed)",
            labels=["vlan", "reason"],
        )
        for (vlan, reason), n in sorted(ing.malformed.items()):
            c.add_metric([vlan, reason], n)
        yield c
        c = CounterMetricFamily(
            f"{NS}_mdns_packets_truncated",
            "mDNS datagrams larger than the receive buffer: cut by the kernel, dropped unread",
        )
        c.add_metric([], gw.transport.truncated)
        yield c

        store = gw.store
        g = GaugeMetricFamily(f"{NS}_store_records", "Records in the store")
        g.add_metric([], len(store))
        yield g
        g = GaugeMetricFamily(f"{NS}_store_records_max", "Store capacity in records")
        g.add_metric([], store.max_records)
        yield g
        c = CounterMetricFamily(f"{NS}_store_evicted_records", "Records evicted at capacity")
        c.add_metric([], store.evicted)
        yield c
        c = CounterMetricFamily(f"{NS}_store_expired_records", "Records expired by TTL")
        c.add_metric([], store.expired)
        yield c
        c = CounterMetricFamily(
            f"{NS}_store_refused_records",
            "New records not cached: the store was full and their VLAN held its share of it",
            labels=["vlan"],
        )
        for vlan, n in sorted(store.refused.items()):
            c.add_metric([vlan], n)
        yield c

        g = GaugeMetricFamily(f"{NS}_vlan_up", "VLAN interface present and up", labels=["vlan"])
        for name in gw.config.vlans:
            link = gw.links.by_vlan.get(name)
            g.add_metric([name], 1.0 if link is not None and link.up else 0.0)
        yield g
        g = GaugeMetricFamily(f"{NS}_policy_valid", "1 if the last policy load succeeded")
        g.add_metric([], 0.0 if gw.policy_error else 1.0)
        yield g
        g = GaugeMetricFamily(f"{NS}_policy_resources", "Policy resources in force")
        g.add_metric([], len(gw.engine.policies))
        yield g
        if gw.watcher is not None:
            c = CounterMetricFamily(
                f"{NS}_policy_reloads", "Policy sets hot-reloaded that changed the policies"
            )
            c.add_metric([], gw.watcher.reloads)
            yield c
        c = CounterMetricFamily(
            f"{NS}_memory_full_collections", "Full garbage collections run (see memory.py)"
        )
        c.add_metric([], gw.memory.full_collections)
        yield c
        c = CounterMetricFamily(
            f"{NS}_memory_cycles_freed", "Objects the full collections freed (reference cycles)"
        )
        c.add_metric([], gw.memory.cycles_found)
        yield c
        http = gw.http
        if http is not None:
            c = CounterMetricFamily(
                f"{NS}_http_connections_closed",
                "HTTP connections we closed: full (cap reached, none idle), idle (the oldest "
                "one waiting for its request, for a new one), timeout (request or response)",
                labels=["reason"],
            )
            for reason, n in sorted(http.closed.items()):
                c.add_metric([reason], n)
            yield c
        for extra in gw.extra_collectors:
            yield from extra.collect()


class BuildInfoCollector(Collector):
    """mdns_gateway_build_info{version, python, compiled}: which build answers (always 1)."""

    def collect(self) -> Iterator[Metric]:
        from . import __version__
        from .mdns import wire

        g = GaugeMetricFamily(
            f"{NS}_build_info",
            "The running build: version, Python, and whether the hot path is compiled",
            labels=["version", "python", "compiled"],
        )
        compiled = "true" if wire.__file__.endswith((".so", ".pyd")) else "false"
        g.add_metric([__version__, platform.python_version(), compiled], 1)
        yield g


def registry_for(gateway: Gateway) -> CollectorRegistry:
    """The gateway's metrics, its build, and the process's own (process_cpu_seconds_total,
    process_resident_memory_bytes, process_open_fds, ... from /proc)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(gateway))
    registry.register(BuildInfoCollector())
    ProcessCollector(registry=registry)
    return registry
