"""The gateway's Prometheus collectors, read from the components' own counters at scrape time.

The hot paths keep plain integers (a Counter increment per packet costs more than the answer);
these collectors turn them into metrics named mdns_gateway_<subsystem>_<name>_<unit|total>
with few, low-cardinality labels (vlan, view, transport, reason, rcode). Each collector is
given the component(s) it reads; ``bridge/app.py`` registers them, with chrony's and the
reflector's (in their packages), in the one registry /metrics serves.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .diagnostics import Diagnostics
    from .dnsfront.answer import Stats
    from .dnsfront.cache import Budget
    from .dnsfront.ondemand import OnDemand
    from .dnsfront.ratelimit import ResponseRateLimiter
    from .dnsfront.resolver import Resolver
    from .mdns.browser import Browser
    from .mdns.ingest import Ingest
    from .mdns.interest import Interest
    from .mdns.transport import MdnsTransport
    from .memory import MemoryKeeper
    from .periodic import Periodic
    from .store import Store
    from .web import HttpSurface

NS = "mdns_gateway"


class DnsCollector(Collector):
    """mdns_gateway_dns_*: the DNS server's and the resolver's counters, on-demand lookups."""

    def __init__(
        self,
        stats: Stats,
        resolver: Resolver,
        ondemand: OnDemand,
        cache: Budget,
        rate_limiter: ResponseRateLimiter | None = None,
    ) -> None:
        self.stats = stats
        self.cache = cache  # the pre-rendered answers' byte budget
        self.resolver = resolver
        self.ondemand = ondemand
        self.rate_limiter = rate_limiter  # None: RRL is off (counted as zero)

    def collect(self) -> Iterator[Metric]:
        stats = self.stats

        c = CounterMetricFamily(f"{NS}_dns_queries", "DNS queries received", labels=["transport"])
        for transport in ("udp", "tcp"):
            c.add_metric([transport], stats.queries[transport])
        yield c
        c = CounterMetricFamily(
            f"{NS}_dns_cache_hits", "Queries answered from pre-rendered responses"
        )
        c.add_metric([], stats.cache_hits)
        yield c
        c = CounterMetricFamily(
            f"{NS}_dns_cache_evicted",
            "Pre-rendered responses dropped for room, least recently used first (the cache is "
            "never cleared whole for being full)",
        )
        c.add_metric([], self.cache.evicted)
        yield c
        g = GaugeMetricFamily(
            f"{NS}_dns_cache_bytes",
            "Memory of the pre-rendered responses, every view and transport (estimated, "
            "overhead included)",
        )
        g.add_metric([], self.cache.bytes)
        yield g
        g = GaugeMetricFamily(
            f"{NS}_dns_cache_limit_bytes", "The pre-rendered responses' byte budget"
        )
        g.add_metric([], self.cache.limit)
        yield g
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
            "Replies that could not be sent",
        )
        c.add_metric([], stats.dropped)
        yield c
        c = CounterMetricFamily(
            f"{NS}_dns_rate_limited",
            "UDP responses over a client prefix's rate (RRL): dropped, or slipped (sent as an "
            "empty TC=1 reply)",
            labels=["action"],
        )
        rrl = self.rate_limiter
        c.add_metric(["dropped"], rrl.dropped if rrl is not None else 0)
        c.add_metric(["slipped"], rrl.slipped if rrl is not None else 0)
        yield c
        c = CounterMetricFamily(f"{NS}_dns_tcp_connections", "TCP connections accepted")
        c.add_metric([], stats.tcp_connections)
        yield c
        c = CounterMetricFamily(
            f"{NS}_dns_tcp_connections_closed",
            "TCP connections we closed: per_client (cap per address), full (no idle one to close "
            "instead), idle (the longest idle, for a new one), write_timeout (answers not read)",
            labels=["reason"],
        )
        for reason, n in sorted(stats.tcp_closed.items()):
            c.add_metric([reason], n)
        yield c
        od = self.ondemand
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
        c.add_metric([], self.resolver.unusable_services)
        yield c


class MdnsCollector(Collector):
    """mdns_gateway_mdns_*: packets in (ingest), queries out (browser), send errors."""

    def __init__(
        self, ingest: Ingest, browser: Browser, transport: MdnsTransport, interest: Interest
    ) -> None:
        self.ingest = ingest
        self.browser = browser
        self.transport = transport
        self.interest = interest

    def collect(self) -> Iterator[Metric]:
        ing = self.ingest
        c = CounterMetricFamily(
            f"{NS}_mdns_packets_received", "mDNS packets accepted", labels=["vlan", "kind"]
        )
        for (vlan, kind), n in sorted(ing.received.items()):
            c.add_metric([vlan, kind], n)
        yield c
        c = CounterMetricFamily(
            f"{NS}_mdns_packets_dropped", "mDNS packets rejected", labels=["vlan", "reason"]
        )
        # off_subnet from 0 on every VLAN: an alert's increase() sees the first one too
        dropped = dict.fromkeys(((v, "off_subnet") for v in ing.links.vlans), 0)
        dropped.update(ing.dropped)
        for (vlan, reason), n in sorted(dropped.items()):
            c.add_metric([vlan, reason], n)
        yield c
        c = CounterMetricFamily(
            f"{NS}_mdns_records_received", "mDNS records applied to the store", labels=["vlan"]
        )
        for vlan, n in sorted(ing.records.items()):
            c.add_metric([vlan], n)
        yield c
        c = CounterMetricFamily(
            f"{NS}_mdns_records_refused",
            "mDNS records the record guard refused, by VLAN and reason (class_not_in, "
            "meta_type, address_not_on_vlan, not_owner)",
            labels=["vlan", "reason"],
        )
        for (vlan, reason), n in sorted(ing.refusals().items()):
            c.add_metric([vlan, reason], n)
        yield c
        c = CounterMetricFamily(f"{NS}_mdns_queries_sent", "mDNS query packets we sent")
        c.add_metric([], self.browser.queries_sent)
        yield c
        c = CounterMetricFamily(
            f"{NS}_mdns_duplicate_questions_suppressed",
            "questions not sent: another querier asked them within the second (RFC 6762 §7.3)",
        )
        c.add_metric([], self.browser.duplicates_suppressed)
        yield c
        families = self.browser.families
        c = CounterMetricFamily(
            f"{NS}_mdns_single_family_questions",
            "refresh questions sent over one address family (every record heard from both), "
            "by outcome: single (sent over one) and fallback (no answer: asked over the other)",
            labels=["outcome"],
        )
        c.add_metric(["single"], families.single)
        c.add_metric(["fallback"], families.fallbacks)
        yield c
        interest = self.interest
        c = CounterMetricFamily(
            f"{NS}_mdns_refreshes",
            "records due for refresh (RFC 6762 §5.2) that are not browsed ones, by decision: "
            "asked (wanted lately) or skipped (nobody wanted it: left to expire)",
            labels=["decision"],
        )
        c.add_metric(["asked"], interest.refreshes)
        c.add_metric(["skipped"], interest.skipped)
        yield c
        c = CounterMetricFamily(
            f"{NS}_mdns_interests_evicted",
            "interests forgotten to stay within MDNS_INTEREST_MAX",
        )
        c.add_metric([], interest.evicted)
        yield c
        g = GaugeMetricFamily(f"{NS}_mdns_interests", "(name, type) interests remembered")
        g.add_metric([], len(interest))
        yield g
        c = CounterMetricFamily(f"{NS}_mdns_send_errors", "mDNS sends that failed")
        c.add_metric([], self.transport.send_errors)
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
        c.add_metric([], self.transport.truncated)
        yield c


class StoreCollector(Collector):
    """mdns_gateway_store_*: the record store's size, capacity and what it let go."""

    def __init__(self, store: Store, vlans: Iterable[str]) -> None:
        self.store = store
        self.vlans = tuple(vlans)

    def collect(self) -> Iterator[Metric]:
        store = self.store
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
        # from 0 on every VLAN: an alert's increase() sees the first refusal too
        refused = dict.fromkeys(self.vlans, 0)
        refused.update(store.refused)
        for vlan, n in sorted(refused.items()):
            c.add_metric([vlan], n)
        yield c


class GatewayCollector(Collector):
    """mdns_gateway_vlan_up and mdns_gateway_policy_*: read through the diagnostics window."""

    def __init__(self, diagnostics: Diagnostics) -> None:
        self.diag = diagnostics

    def collect(self) -> Iterator[Metric]:
        diag = self.diag
        g = GaugeMetricFamily(f"{NS}_vlan_up", "VLAN interface present and up", labels=["vlan"])
        for name in diag.vlans:
            link = diag.links.by_vlan.get(name)
            g.add_metric([name], 1.0 if link is not None and link.up else 0.0)
        yield g
        policy = diag.policy()
        g = GaugeMetricFamily(f"{NS}_policy_valid", "1 if the last policy load succeeded")
        g.add_metric([], 0.0 if policy.error else 1.0)
        yield g
        g = GaugeMetricFamily(f"{NS}_policy_resources", "Policy resources in force")
        g.add_metric([], len(policy.engine.policies))
        yield g
        c = CounterMetricFamily(
            f"{NS}_policy_rejections", "Policy sets rejected (the previous set stayed in force)"
        )
        c.add_metric([], policy.rejections)
        yield c
        if policy.reloads is not None:
            c = CounterMetricFamily(
                f"{NS}_policy_reloads", "Policy sets hot-reloaded that changed the policies"
            )
            c.add_metric([], policy.reloads)
            yield c
            c = CounterMetricFamily(
                f"{NS}_policy_coalesced_reloads",
                "SIGHUPs served by the reload of another (a burst costs one more load)",
            )
            c.add_metric([], policy.coalesced)
            yield c


class MemoryCollector(Collector):
    """mdns_gateway_memory_*: the full collections memory.py runs and what they freed."""

    def __init__(self, memory: MemoryKeeper) -> None:
        self.memory = memory

    def collect(self) -> Iterator[Metric]:
        c = CounterMetricFamily(
            f"{NS}_memory_full_collections", "Full garbage collections run (see memory.py)"
        )
        c.add_metric([], self.memory.full_collections)
        yield c
        c = CounterMetricFamily(
            f"{NS}_memory_cycles_freed", "Objects the full collections freed (reference cycles)"
        )
        c.add_metric([], self.memory.cycles_found)
        yield c


class HttpCollector(Collector):
    """mdns_gateway_http_connections_closed_total: connections the HTTP surface closed."""

    def __init__(self, http: HttpSurface) -> None:
        self.http = http

    def collect(self) -> Iterator[Metric]:
        c = CounterMetricFamily(
            f"{NS}_http_connections_closed",
            "HTTP connections we closed: full (cap reached, none idle), idle (the oldest "
            "one waiting for its request, for a new one), timeout (request or response)",
            labels=["reason"],
        )
        for reason, n in sorted(self.http.closed.items()):
            c.add_metric([reason], n)
        yield c
        c = CounterMetricFamily(
            f"{NS}_http_requests_refused",
            "HTTP requests refused, by status: 401 (bearer token missing or wrong), 403 (no "
            "token configured on a non-loopback address), 405, 400, 408 and 431 (request "
            "head too slow or too large)",
            labels=["status"],
        )
        for status, n in sorted(self.http.refused.items()):
            c.add_metric([status], n)
        yield c


class JobsCollector(Collector):
    """mdns_gateway_job_failures_total: periodic jobs that raised (they keep their schedule)."""

    def __init__(self, periodic: Periodic) -> None:
        self.periodic = periodic

    def collect(self) -> Iterator[Metric]:
        c = CounterMetricFamily(
            f"{NS}_job_failures", "Runs of a periodic job that raised", labels=["job"]
        )
        for name, job in sorted(self.periodic.jobs.items()):
            c.add_metric([name], job.failures)
        yield c


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
