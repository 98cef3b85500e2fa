"""The gateway's Prometheus collectors, read from the components' own counters at scrape time.

The hot paths keep plain integers (a Counter increment per packet costs more than the answer);
these collectors turn them into metrics named mdns_gateway_<subsystem>_<name>_<unit|total>
with few, low-cardinality labels (vlan, view, transport, reason, rcode). Each collector is
given the component(s) it reads; ``bridge/app.py`` registers them, with chrony's and the
reflector's (in their packages), in the one registry /metrics serves.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

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

_K = TypeVar("_K", bound="str | tuple[str, ...]")
#: A family's samples: its one value (a family without labels); a mapping of label values to
#: values, exported sorted by label values; or (label values, value) pairs, exported in their
#: order. The label value stands alone where the family has one label.
Samples = float | Mapping[_K, float] | Iterable[tuple[_K, float]]
_F = TypeVar("_F", CounterMetricFamily, GaugeMetricFamily)


def _filled(family: _F, samples: Samples[_K]) -> _F:
    if isinstance(samples, (int, float)):
        family.add_metric([], samples)
        return family
    for key, value in sorted(samples.items()) if isinstance(samples, Mapping) else samples:
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


def counter(
    name: str, documentation: str, samples: Samples[_K], labels: Sequence[str] = ()
) -> CounterMetricFamily:
    """A counter family (``name`` without ``_total``) with its samples, as collectors yield it."""
    return _filled(CounterMetricFamily(name, documentation, labels=labels), samples)


def gauge(
    name: str, documentation: str, samples: Samples[_K], labels: Sequence[str] = ()
) -> GaugeMetricFamily:
    """A gauge family with its samples (see :data:`Samples`)."""
    return _filled(GaugeMetricFamily(name, documentation, labels=labels), samples)


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
        yield counter(
            f"{NS}_dns_queries",
            "DNS queries received",
            ((t, stats.queries[t]) for t in ("udp", "tcp")),
            ["transport"],
        )
        yield counter(
            f"{NS}_dns_cache_hits", "Queries answered from pre-rendered responses", stats.cache_hits
        )
        yield counter(
            f"{NS}_dns_cache_evicted",
            "Pre-rendered responses dropped for room, least recently used first (the cache is "
            "never cleared whole for being full)",
            self.cache.evicted,
        )
        yield gauge(
            f"{NS}_dns_cache_bytes",
            "Memory of the pre-rendered responses, every view and transport (estimated, "
            "overhead included)",
            self.cache.bytes,
        )
        yield gauge(
            f"{NS}_dns_cache_limit_bytes",
            "The pre-rendered responses' byte budget",
            self.cache.limit,
        )
        yield counter(f"{NS}_dns_slow_path", "Queries that needed parsing/rendering", stats.slow)
        yield counter(
            f"{NS}_dns_responses",
            "Slow-path responses by rcode",
            stats.rcodes,
            ["rcode"],
        )
        yield counter(
            f"{NS}_dns_malformed",
            "Queries that could not be parsed",
            stats.malformed,
            ["reason"],
        )
        yield counter(f"{NS}_dns_truncated", "UDP replies sent with TC=1", stats.truncated)
        yield counter(f"{NS}_dns_send_failures", "Replies that could not be sent", stats.dropped)
        rrl = self.rate_limiter
        yield counter(
            f"{NS}_dns_rate_limited",
            "UDP responses over a client prefix's rate (RRL): dropped, or slipped (sent as an "
            "empty TC=1 reply)",
            [
                ("dropped", rrl.dropped if rrl is not None else 0),
                ("slipped", rrl.slipped if rrl is not None else 0),
            ],
            ["action"],
        )
        yield counter(
            f"{NS}_dns_tcp_connections", "TCP connections accepted", stats.tcp_connections
        )
        yield counter(
            f"{NS}_dns_tcp_connections_closed",
            "TCP connections we closed: per_client (cap per address), full (no idle one to close "
            "instead), idle (the longest idle, for a new one), write_timeout (answers not read)",
            stats.tcp_closed,
            ["reason"],
        )
        od = self.ondemand
        yield counter(
            f"{NS}_dns_ondemand_lookups",
            "Cache misses that asked mDNS",
            [("answered", od.answered), ("timeout", od.timeouts)],
            ["outcome"],
        )
        yield gauge(f"{NS}_dns_ondemand_pending", "Cache misses waiting for mDNS", od.pending)
        yield counter(
            f"{NS}_dns_unusable_services",
            "Services withheld from a unicast answer: their target had no usable address",
            self.resolver.unusable_services,
        )


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
        yield counter(
            f"{NS}_mdns_packets_received",
            "mDNS packets accepted",
            ing.received,
            ["vlan", "kind"],
        )
        # off_subnet from 0 on every VLAN: an alert's increase() sees the first one too
        dropped = dict.fromkeys(((v, "off_subnet") for v in ing.links.vlans), 0)
        dropped.update(ing.dropped)
        yield counter(
            f"{NS}_mdns_packets_dropped",
            "mDNS packets rejected",
            dropped,
            ["vlan", "reason"],
        )
        yield counter(
            f"{NS}_mdns_records_received",
            "mDNS records applied to the store",
            ing.records,
            ["vlan"],
        )
        yield counter(
            f"{NS}_mdns_records_refused",
            "mDNS records the record guard refused, by VLAN and reason (class_not_in, "
            "meta_type, address_not_on_vlan, not_owner)",
            ing.refusals(),
            ["vlan", "reason"],
        )
        yield counter(
            f"{NS}_mdns_queries_sent", "mDNS query packets we sent", self.browser.queries_sent
        )
        yield counter(
            f"{NS}_mdns_duplicate_questions_suppressed",
            "questions not sent: another querier asked them within the second (RFC 6762 §7.3)",
            self.browser.duplicates_suppressed,
        )
        families = self.browser.families
        yield counter(
            f"{NS}_mdns_single_family_questions",
            "refresh questions sent over one address family (every record heard from both), "
            "by outcome: single (sent over one) and fallback (no answer: asked over the other)",
            [("single", families.single), ("fallback", families.fallbacks)],
            ["outcome"],
        )
        interest = self.interest
        yield counter(
            f"{NS}_mdns_refreshes",
            "records due for refresh (RFC 6762 §5.2) that are not browsed ones, by decision: "
            "asked (wanted lately) or skipped (nobody wanted it: left to expire)",
            [("asked", interest.refreshes), ("skipped", interest.skipped)],
            ["decision"],
        )
        yield counter(
            f"{NS}_mdns_interests_evicted",
            "interests forgotten to stay within MDNS_INTEREST_MAX",
            interest.evicted,
        )
        yield gauge(f"{NS}_mdns_interests", "(name, type) interests remembered", len(interest))
        yield counter(
            f"{NS}_mdns_send_errors", "mDNS sends that failed", self.transport.send_errors
        )
        yield counter(
            f"{NS}_mdns_packets_malformed",
            "mDNS packets that could not be parsed, by the parser's reason (also counted as "
            "dropped with reason malformed)",
            ing.malformed,
            ["vlan", "reason"],
        )
        yield counter(
            f"{NS}_mdns_packets_truncated",
            "mDNS datagrams larger than the receive buffer: cut by the kernel, dropped unread",
            self.transport.truncated,
        )


class StoreCollector(Collector):
    """mdns_gateway_store_*: the record store's size, capacity and what it let go."""

    def __init__(self, store: Store, vlans: Iterable[str]) -> None:
        self.store = store
        self.vlans = tuple(vlans)

    def collect(self) -> Iterator[Metric]:
        store = self.store
        yield gauge(f"{NS}_store_records", "Records in the store", len(store))
        yield gauge(f"{NS}_store_records_max", "Store capacity in records", store.max_records)
        yield counter(f"{NS}_store_evicted_records", "Records evicted at capacity", store.evicted)
        yield counter(f"{NS}_store_expired_records", "Records expired by TTL", store.expired)
        # from 0 on every VLAN: an alert's increase() sees the first refusal too
        refused = dict.fromkeys(self.vlans, 0)
        refused.update(store.refused)
        yield counter(
            f"{NS}_store_refused_records",
            "New records not cached: the store was full and their VLAN held its share of it",
            refused,
            ["vlan"],
        )


class GatewayCollector(Collector):
    """mdns_gateway_vlan_up and mdns_gateway_policy_*: read through the diagnostics window."""

    def __init__(self, diagnostics: Diagnostics) -> None:
        self.diag = diagnostics

    def collect(self) -> Iterator[Metric]:
        diag = self.diag
        links = diag.links.by_vlan
        yield gauge(
            f"{NS}_vlan_up",
            "VLAN interface present and up",
            (
                (name, 1.0 if (link := links.get(name)) is not None and link.up else 0.0)
                for name in diag.vlans
            ),
            ["vlan"],
        )
        policy = diag.policy()
        yield gauge(
            f"{NS}_policy_valid",
            "1 if the last policy load succeeded",
            0.0 if policy.error else 1.0,
        )
        yield gauge(
            f"{NS}_policy_resources", "Policy resources in force", len(policy.engine.policies)
        )
        yield counter(
            f"{NS}_policy_rejections",
            "Policy sets rejected (the previous set stayed in force)",
            policy.rejections,
        )
        if policy.reloads is not None:
            yield counter(
                f"{NS}_policy_reloads",
                "Policy sets hot-reloaded that changed the policies",
                policy.reloads,
            )
            yield counter(
                f"{NS}_policy_coalesced_reloads",
                "SIGHUPs served by the reload of another (a burst costs one more load)",
                policy.coalesced,
            )


class MemoryCollector(Collector):
    """mdns_gateway_memory_*: the full collections memory.py runs and what they freed."""

    def __init__(self, memory: MemoryKeeper) -> None:
        self.memory = memory

    def collect(self) -> Iterator[Metric]:
        yield counter(
            f"{NS}_memory_full_collections",
            "Full garbage collections run (see memory.py)",
            self.memory.full_collections,
        )
        yield counter(
            f"{NS}_memory_cycles_freed",
            "Objects the full collections freed (reference cycles)",
            self.memory.cycles_found,
        )
        yield counter(
            f"{NS}_memory_trims",
            "Times freed C heap was handed back to the system (malloc_trim; see memory.py)",
            self.memory.trims,
        )


class HttpCollector(Collector):
    """mdns_gateway_http_connections_closed_total: connections the HTTP surface closed."""

    def __init__(self, http: HttpSurface) -> None:
        self.http = http

    def collect(self) -> Iterator[Metric]:
        yield counter(
            f"{NS}_http_connections_closed",
            "HTTP connections we closed: full (cap reached, none idle), idle (the oldest "
            "one waiting for its request, for a new one), timeout (request or response)",
            self.http.closed,
            ["reason"],
        )
        yield counter(
            f"{NS}_http_requests_refused",
            "HTTP requests refused, by status: 401 (bearer token missing or wrong), 403 (no "
            "token configured on a non-loopback address), 405, 400, 408 and 431 (request "
            "head too slow or too large)",
            self.http.refused,
            ["status"],
        )


class JobsCollector(Collector):
    """mdns_gateway_job_failures_total: periodic jobs that raised (they keep their schedule)."""

    def __init__(self, periodic: Periodic) -> None:
        self.periodic = periodic

    def collect(self) -> Iterator[Metric]:
        yield counter(
            f"{NS}_job_failures",
            "Runs of a periodic job that raised",
            ((name, job.failures) for name, job in sorted(self.periodic.jobs.items())),
            ["job"],
        )


class BuildInfoCollector(Collector):
    """mdns_gateway_build_info{version, python, compiled}: which build answers (always 1)."""

    def collect(self) -> Iterator[Metric]:
        from . import __version__
        from .mdns import wire

        compiled = "true" if wire.__file__.endswith((".so", ".pyd")) else "false"
        yield gauge(
            f"{NS}_build_info",
            "The running build: version, Python, and whether the hot path is compiled",
            [((__version__, platform.python_version(), compiled), 1)],
            ["version", "python", "compiled"],
        )
