"""The composition root: every component is built here and every connection made here.

Read this module to see who receives what. No component imports it or receives the Gateway:
each gets the collaborators it uses (the store, the links, a send function, a clock, ...).

- mDNS packet -> ``Ingest`` (store) -> its listeners: the chrony responder, the publisher's
  responder (ServiceAnnouncements, lease names), the reflector.
- policies directory -> the policy engine and the ServiceAnnouncements (one load, one set).
- DHCP lease files -> ``LeaseWatcher`` -> lease host names -> the publisher.
- store change -> the browser (refresh schedule), on-demand lookups, the DNS server's caches,
  the wide-area publisher.
- policy change -> the DNS server's views, the reflector's plan, the wide-area publisher.
- link change (interface scan) -> the transport's groups, the browser, the reflector, DNS zones.
- metrics -> one registry of collectors, each reading one component's counters.

Start-up goes through one ``AsyncExitStack``: every step registers its undo before it runs,
so a failure at any point (a DNS or HTTP bind error after the mDNS sockets are up) unwinds
what was started, and shutdown unwinds the same stack (goodbyes before the sockets close).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import signal
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from . import const
from .activity import EventLog, QueryNames
from .announce.service import Publisher
from .config import ALL_VIEW, Config
from .dnsfront.answer import Answers, view_by_address
from .dnsfront.ondemand import OnDemand
from .dnsfront.ratelimit import ResponseRateLimiter
from .dnsfront.resolver import Resolver, View, Zones
from .dnsfront.server import DnsServer, Listener
from .mdns.browser import Browser
from .mdns.ingest import Ingest
from .mdns.interest import Interest
from .mdns.links import Links
from .mdns.transport import MdnsTransport
from .memory import MemoryKeeper, import_aiohttp
from .periodic import Periodic
from .policy import PolicyEngine, default_engine
from .policy.watch import PolicyWatcher
from .store import Store

# Optional components are imported where they are built, only when the config asks for them
# (-X importtime, share of the import time before the first answer; docs/performance.md,
# "Start-up"): chrony and the reflector, 13 modules, 2.6 %; the Kubernetes policy source with
# aiohttp, its HTTP client, 106 modules, 37 %. The HTTP surface (aiohttp's server) and the
# metrics registry (prometheus_client) are imported in a worker thread once DNS answers
# (``_import_late``): the first answer no longer waits for them.
if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from .chrony import ChronyService
    from .chrony.health import ServerState
    from .dhcp.watch import LeaseWatcher
    from .diagnostics import Diagnostics, PolicyStatus
    from .policy.kubesource import KubePolicySource
    from .reflector import Reflector, ReflectorGlue
    from .web import HttpSurface
    from .widearea.publisher import WideAreaPublisher

log = logging.getLogger(__name__)


def loop_time() -> float:
    """The one clock of the gateway's components: the running event loop's."""
    return asyncio.get_running_loop().time()


def raise_file_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; warns when the caps could still exhaust it.

    The usual soft limit (1,024) is below what the TCP DNS and HTTP caps allow together with
    the sockets the gateway needs itself; running out stops every listener from accepting.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = const.FD_LIMIT_UNBOUNDED if hard == resource.RLIM_INFINITY else hard
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, want, exc)
    need = const.DNS_TCP_MAX_CONNECTIONS + const.HTTP_MAX_CONNECTIONS + const.FD_RESERVE
    if soft < need:
        log.warning(
            "open-file limit %d is below %d (TCP DNS %d + HTTP %d + %d for sockets and files):"
            " a connection flood can stop the listeners; raise it (systemd: LimitNOFILE=)",
            soft,
            need,
            const.DNS_TCP_MAX_CONNECTIONS,
            const.HTTP_MAX_CONNECTIONS,
            const.FD_RESERVE,
        )
    return soft


def _import_late() -> None:
    """The modules only the HTTP surface and /metrics use, imported by a worker thread once
    DNS answers: aiohttp (bridge.web) and prometheus_client (bridge.metrics and the
    collectors), about half of the import time before the first answer (docs/performance.md,
    "Start-up"). Importing in a thread holds the GIL in turns: the event loop's thread answers
    meanwhile, a datagram waiting at most a switch interval (5 ms)."""
    import prometheus_client  # noqa: F401

    import_aiohttp("aiohttp.web")  # before bridge.web: without what it never uses
    from . import metrics, web  # noqa: F401
    from .announce import metrics as announce_metrics  # noqa: F401


class Gateway:
    """The running gateway: builds every component from a Config, wires them, runs them.

    Construction builds and connects (no socket is opened); :meth:`start` binds and starts
    in order through one exit stack and :meth:`stop` unwinds it; :meth:`run` is the service
    (signals, start, wait, stop). Components never see this object.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        clock = loop_time
        self._loop: asyncio.AbstractEventLoop | None = None  # the packet path's clock
        self._tick_handle: asyncio.TimerHandle | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self.ready = asyncio.Event()
        self.stopping = asyncio.Event()

        # --- components ------------------------------------------------------------------
        self.store = Store(config.max_records)
        self.links = Links(config.vlans)
        self.transport = MdnsTransport(self._on_mdns)
        self.ingest = Ingest(self.store, self.links)
        self.browser = Browser(self.store, self.links, self.transport.send)
        self.resolver = Resolver(
            self.store, self._zones(), config.dns.max_ttl, config.dns.negative_ttl
        )
        # what clients wanted lately: the only records the browser refreshes (RFC 6762 §5.2)
        self.interest = Interest()
        self.resolver.used = self.interest.note_cached
        self.browser.wanted = self.interest.wanted
        self.browser.heard = self.interest.note
        self.ondemand = OnDemand(self.browser.ask, config.dns.ondemand_timeout)
        # store changes, one channel: the DNS answers compare the store's generations before
        # each batch; on-demand lookups listen while one waits; the browser follows new records
        self.answers = Answers(self.resolver, self.ondemand, self.store)
        self.ondemand.changes = self.store.subscribe(self.ondemand.on_change, active=False)
        self.store.subscribe(self.browser.on_record)
        rrl = config.dns.rate_limit
        self.rate_limiter = (
            ResponseRateLimiter(rrl.responses_per_second, rrl.window, rrl.slip)
            if rrl is not None
            else None
        )
        self.server = DnsServer(
            self.answers,
            self.ondemand.lookup,
            view_by_address(self.links.vlan_of_address, config.dns.default_view),
            config.dns.max_udp_payload,
            self.rate_limiter,
        )
        self.memory = MemoryKeeper(self.store.__len__, lambda: self.answers.budget.bytes)
        self.periodic = Periodic(clock)
        self.engine: PolicyEngine = default_engine(config.vlans)
        self.policy_error: str | None = None
        self.policy_rejections = 0
        self.watcher: PolicyWatcher | None = None  # built at start: it reads the directory
        self._reloads: set[asyncio.Task[bool]] = set()  # SIGHUP reloads under way
        self.chrony: ChronyService | None = None  # NTP advertiser bound to chronyd's health
        if config.chrony is not None:
            from .chrony import ChronyService  # optional: see the imports

            self.chrony = ChronyService(
                config.chrony, self.store, self.links, self.transport.send, clock
            )
        # ServiceAnnouncements and DHCP lease names: its own responder, its pinned records
        self.publisher = Publisher(
            self.store,
            self.links,
            self.transport.send,
            clock,
            publish_leases=config.dhcp is not None and config.dhcp.publish_mdns,
        )
        self.kube: KubePolicySource | None = None  # ServicePolicy objects of the Kubernetes API
        if config.kubernetes is not None:  # (and ServiceAnnouncements, for the publisher)
            # optional: with aiohttp, a third of the start-up (see the imports)
            from .policy.kubesource import KubePolicySource

            k = config.kubernetes
            self.kube = KubePolicySource(
                k.namespace, k.node_name, k.kubeconfig, config.vlans, self._kube_policies,
                env=os.environ, on_announcements=self.publisher.set_announcements,
            )  # fmt: skip
        self.leases: LeaseWatcher | None = None  # DHCP lease files -> host names
        if config.dhcp is not None:
            from .dhcp.watch import LeaseWatcher  # optional: see the imports

            self.leases = LeaseWatcher(
                config.dhcp.leases,
                self.links.vlan_of_address,
                {name: v.domain for name, v in config.vlans.items()},
                self.publisher.set_leases,
                reserved=(config.dns.nameserver,),
            )
        self.reflector: ReflectorGlue | None = None  # multicast reflection between VLANs
        if config.reflector.enabled:
            from .reflector import Reflector, ReflectorGlue  # optional: see the imports

            reflector = Reflector(
                list(config.vlans),
                config.reflector,
                self.engine,
                holds=self.store.has_name,
                cached=self.store.get,
            )
            self.reflector = ReflectorGlue(reflector, self.links, self.transport.send)
        self.widearea: WideAreaPublisher | None = None  # RFC 2136 publishing into a DNS zone
        if config.wide_area is not None:
            from .widearea.publisher import WideAreaPublisher  # optional: see the imports

            self.widearea = WideAreaPublisher(config.wide_area, config.vlans, self.store, clock)
            self.store.subscribe(self.widearea.on_change)
            # a published service must not expire for want of a DNS client: keep everything
            self.interest.keepers.append(lambda vlan, name, rdtype: True)
        # what happened lately, for the web page: the store's changes and the drop, refusal
        # and loop counters become events; query packets feed the most-asked names
        counters = {
            "dropped": lambda: self.ingest.dropped,
            "refused": self._refusals,
        }
        if self.reflector is not None:
            counters["another_reflector"] = lambda: self._reflector().loops
        self.events = EventLog(time.time, lambda: self.store.removing, counters)
        self.query_names = QueryNames()
        # built once DNS answers (start), or by the first reader of ``registry`` (tests)
        self._registry: CollectorRegistry | None = None
        self.http: HttpSurface | None = None  # built by start, after DNS: aiohttp is slow to import

        # --- connections -----------------------------------------------------------------
        # mDNS packets, after ingest has stored their records
        if self.chrony is not None:
            self.ingest.listeners.append(self.chrony.shell.on_packet)
        self.ingest.listeners.append(self.publisher.on_packet)
        if self.reflector is not None:
            self.ingest.listeners.append(self.reflector.on_packet)
        self.ingest.listeners.append(self.query_names.on_packet)
        # questions heard: interest (reflected ones keep the answers fresh), and §7.3
        self.ingest.listeners.append(self.browser.on_packet)
        # store changes: services announced and gone, for the event log
        self.store.subscribe(self.events.on_record)
        # the browser asks for a tick when it has questions due (batched)
        self.browser.wake = self._wake_browser
        # policy changes (after the DNS server's views, see apply_engine)
        self.policy_consumers: list[Callable[[PolicyEngine], None]] = []
        if self.reflector is not None:
            self.policy_consumers.append(self.reflector.set_policy)
        if self.widearea is not None:
            self.policy_consumers.append(self.widearea.set_policy)
        # periodic jobs (supervised: a failure is counted, logged once per burst)
        self.periodic.add("sweep", const.STORE_SWEEP_INTERVAL, lambda: self.store.sweep(clock()))
        self.periodic.add("memory", const.MEMORY_INTERVAL, lambda: self.memory.tick(clock()))
        self.periodic.add("browse", const.MDNS_REFRESH_TICK, lambda: self.browser.tick(clock()))
        self.periodic.add("link scan", const.IFACE_RESCAN_INTERVAL, self.refresh_links)
        self.periodic.add("events", const.EVENTS_POLL_INTERVAL, self.events.poll)
        if self.chrony is not None:
            self.periodic.add(
                "chrony poll", const.CHRONY_POLL_INTERVAL, self.chrony.poll_once, first=0.0
            )
        if self.reflector is not None:
            log.info(
                "reflector enabled: %.0f packets/s per VLAN and direction, burst %d",
                config.reflector.rate,
                config.reflector.burst,
            )

    # --- metrics ---------------------------------------------------------------------------

    @property
    def registry(self) -> CollectorRegistry:
        """What /metrics serves: one collector per component (built on first use: start
        builds it after DNS answers, from modules ``_import_late`` loaded off the loop)."""
        if self._registry is None:
            self._registry = self._build_registry()
        return self._registry

    def _build_registry(self) -> CollectorRegistry:
        from prometheus_client import ProcessCollector
        from prometheus_client.registry import CollectorRegistry

        from .announce.metrics import AnnounceCollector
        from .metrics import (
            BuildInfoCollector,
            DnsCollector,
            GatewayCollector,
            JobsCollector,
            MdnsCollector,
            MemoryCollector,
            StoreCollector,
        )

        registry = CollectorRegistry(auto_describe=False)
        # and the process's own: process_cpu_seconds_total, _resident_memory_bytes,
        # _open_fds, ... from /proc
        for collector in (
            DnsCollector(
                self.server.stats,
                self.resolver,
                self.ondemand,
                self.answers.budget,
                self.rate_limiter,
            ),
            MdnsCollector(self.ingest, self.browser, self.transport, self.interest),
            StoreCollector(self.store, self.config.vlans),
            GatewayCollector(self.diagnostics),
            MemoryCollector(self.memory),
            JobsCollector(self.periodic),
            BuildInfoCollector(),
            AnnounceCollector(self.publisher),
        ):
            registry.register(collector)
        ProcessCollector(registry=registry)
        if self.chrony is not None:
            from .chrony import ChronyCollector

            registry.register(ChronyCollector(self.chrony))
        if self.leases is not None:
            from .dhcp.metrics import DhcpCollector

            registry.register(DhcpCollector(self.leases))
        if self.reflector is not None:
            from .reflector import ReflectorCollector

            registry.register(ReflectorCollector(self.reflector.reflector))
        if self.kube is not None:
            from .policy.kubemetrics import KubeCollector

            registry.register(KubeCollector(self.kube))
        if self.widearea is not None:
            from .widearea.metrics import WideAreaCollector

            registry.register(WideAreaCollector(self.widearea))
        return registry

    def build_http(self) -> HttpSurface:
        """The HTTP surface, built once (start builds it after DNS answers), its refusals
        counted on /metrics."""
        if self.http is None:
            from .metrics import HttpCollector
            from .web import HttpSurface

            self.http = HttpSurface(self.diagnostics, self.registry, self.config.http.token)
            self.registry.register(HttpCollector(self.http))
        return self.http

    async def _start_http(self, listen: tuple[str, int]) -> None:
        """Start the HTTP surface, its modules imported off the loop first so that DNS keeps
        answering meanwhile."""
        if self.http is None:
            await asyncio.to_thread(_import_late)
        await self.build_http().start(listen)

    async def _stop_http(self) -> None:
        if self.http is not None:
            await self.http.stop()

    # --- readers of the components, for the event log and the diagnostics ----------------

    def _reflector(self) -> Reflector:
        assert self.reflector is not None
        return self.reflector.reflector

    def _refusals(self) -> Mapping[tuple[str, str], int]:
        """Records refused: the record guard's, and the store's when full (reason store_full)."""
        out = dict(self.ingest.refusals())
        for vlan, n in self.store.refused.items():
            out[(vlan, "store_full")] = n
        return out

    def _chrony_states(self) -> list[tuple[ServerState, list[str]]]:
        assert self.chrony is not None
        chrony = self.chrony
        return [(st, chrony.advertised_on(name)) for name, st in chrony.states.items()]

    # --- policy --------------------------------------------------------------------------

    async def _load_policies(self) -> None:
        """The first load, in a worker thread; a bad file never stops start-up: the gateway
        starts with the default policy and says why."""
        self.apply_engine(self.engine)  # views exist from the start, whatever the files hold
        path = self.config.policies
        if path is None:
            return
        missing = not path.exists()
        self.watcher = PolicyWatcher(
            path,
            self.config.vlans,
            on_change=self.apply_engine,
            on_error=self._policy_rejected,
            engine=self.engine if missing else None,
            on_announcements=self.publisher.set_announcements,
        )
        if missing:
            log.warning(
                "policies directory %s does not exist: every VLAN sees only itself "
                "until it is created",
                path,
            )
        elif await self.watcher.reload():
            log.info("policies loaded: %d from %s", len(self.engine.policies), path)

    def _kube_policies(self, engine: PolicyEngine, problems: str | None) -> None:
        """The Kubernetes objects changed: the accepted ones in force, the rejected ones'
        problems shown (/api/policies, mdns_gateway_policy_valid 0) until they are fixed."""
        self.apply_engine(engine)
        self.policy_error = problems

    def _on_sighup(self) -> None:
        """Reload the policies off the event loop; signals during a reload coalesce."""
        if self.watcher is None:
            log.info("SIGHUP: no policies directory is configured, nothing to reload")
            # (the Kubernetes source watches: a change applies without a signal)
            return
        task = asyncio.create_task(self.watcher.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _cancel_reloads(self) -> None:
        for task in list(self._reloads):
            task.cancel()
        await asyncio.gather(*self._reloads, return_exceptions=True)

    def _policy_rejected(self, message: str) -> None:
        self.policy_error = message
        self.policy_rejections += 1
        default = self.watcher is None or self.watcher.engine is None
        log.error(
            "policies rejected, %s:\n%s",
            "starting with the default policy (every VLAN sees only itself)"
            if default
            else "the previous set stays in force",
            message,
        )

    def apply_engine(self, engine: PolicyEngine) -> None:
        """Swap the policy in force: new views, and every pre-rendered answer dropped."""
        self.engine = engine
        self.policy_error = None
        self.answers.set_views(self.views(engine))
        for consumer in self.policy_consumers:
            consumer(engine)

    def views(self, engine: PolicyEngine) -> Mapping[str, View]:
        views = {name: View(name, name, engine.view(name)) for name in self.config.vlans}
        views[ALL_VIEW] = View(ALL_VIEW, None, engine.view(ALL_VIEW))
        return views

    @functools.cached_property
    def diagnostics(self) -> Diagnostics:
        """What the HTTP surface and /metrics read, built by their first reader (after DNS
        answers): bridge.diagnostics' two dataclasses are off the path to the first answer
        (docs/performance.md, "Start-up")."""
        from .diagnostics import Diagnostics

        return Diagnostics(
            vlans=self.config.vlans,
            links=self.links,
            store=self.store,
            clock=loop_time,
            ready=self.ready.is_set,
            policy=self.policy_status,
            refusals=self.ingest.refusals,
            not_ready=self.kube.not_ready if self.kube is not None else lambda: None,
            published=self.publisher.origin,
            announcements=lambda: self.publisher.announcements,
            wall=time.time,
            events=self.events,
            query_names=self.query_names,
            reflected=None if self.reflector is None else lambda: self._reflector().packets,
            chrony=None if self.chrony is None else self._chrony_states,
        )

    def policy_status(self) -> PolicyStatus:
        from .diagnostics import PolicyStatus

        watcher = self.watcher
        reloads = None if watcher is None else watcher.reloads
        if self.kube is not None:
            reloads = self.kube.builds
        coalesced = 0 if watcher is None else watcher.coalesced
        return PolicyStatus(
            self.engine, self.policy_error, self.policy_rejections, reloads, coalesced
        )

    # --- wiring --------------------------------------------------------------------------

    def _zones(self) -> Zones:
        domains = {name: v.domain for name, v in self.config.vlans.items()}
        subnets = {name: link.subnets for name, link in self.links.by_vlan.items()}
        dns_cfg = self.config.dns
        # the nameserver's addresses per view: the router's on that VLAN; for "*" (the
        # router's own clients) the concrete addresses it listens on
        addresses = {name: link.addresses for name, link in self.links.by_vlan.items()}
        addresses[ALL_VIEW] = tuple(
            host
            for host, _ in (*dns_cfg.listen, *dns_cfg.view_listeners.get(ALL_VIEW, ()))
            if host not in ("0.0.0.0", "::")
        )
        return Zones(domains, dns_cfg.browse_domain, subnets, dns_cfg.nameserver, addresses)

    def _on_mdns(self, data: bytes, src: str, port: int, ifindex: int, family: int) -> None:
        assert self._loop is not None
        self.ingest.handle(data, src, port, ifindex, family, self._loop.time())

    def _wake_browser(self) -> None:
        if self._tick_handle is None and self._loop is not None:
            delay = const.MDNS_ASK_BATCH_DELAY
            self._tick_handle = self._loop.call_later(delay, self._browser_tick)

    def _browser_tick(self) -> None:
        self._tick_handle = None
        self.periodic.run("browse")

    def refresh_links(self) -> None:
        """After an interface scan: the transport's groups, the browser, reflector and zones."""
        joins, gone = self.links.refresh()
        if self.reflector is not None:
            self.reflector.refresh_links()
        for link in gone:
            self.transport.forget(link.ifindex)
        for link in joins:
            if link.up:
                self.transport.join(link.ifindex, link.has_v4, link.has_v6)
                self.browser.start_vlan(link.vlan, loop_time())
        if joins or gone:
            self.publisher.sync()  # a VLAN gone: its announcements withdrawn
            self.resolver.zones = self._zones()
            self.server.addresses_changed()
            self.answers.set_views(self.answers.views)

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start everything, in order; on any failure, undo what was started."""
        loop = self._loop = asyncio.get_running_loop()
        raise_file_limit()
        stack = contextlib.AsyncExitStack()
        try:
            stack.push_async_callback(self._cancel_reloads)
            await self._load_policies()  # the views DNS answers from
            # each undo is registered before its step runs (a half-done step is undone too);
            # the stack unwinds in reverse: what starts first stops last
            stack.callback(self.transport.close)
            self.transport.start(loop)
            self.refresh_links()  # the VLANs' addresses: the clients' views, the zones
            stack.callback(self.publisher.stop)  # goodbyes, sockets still open
            self.publisher.start(loop)
            # DNS as soon as it can answer as it will; what it does not use starts after it
            # (docs/performance.md, "Start-up")
            stack.push_async_callback(self.server.close)
            await self.server.start(self._dns_listeners())
            if self.kube is not None:
                # the default policy is in force (and /readyz says why) until the first list
                stack.push_async_callback(self.kube.stop)
                self.kube.start()
            if self.chrony is not None:
                stack.push_async_callback(self.chrony.stop)  # goodbyes, sockets still open
                await self.chrony.start()
            if self.leases is not None:
                stack.push_async_callback(self.leases.stop)
                self.leases.start()
            stack.push_async_callback(self.periodic.stop)
            self.periodic.start()
            if self.widearea is not None:
                stack.push_async_callback(self.widearea.stop)
                self.widearea.start()
            if self.watcher is not None:
                # hot reload: a change applies within about a second (one stable poll)
                stack.push_async_callback(self.watcher.stop)
                self.watcher.start()
            # HTTP last, its modules imported while DNS answers: once it accepts, everything
            # else is up and /readyz says ready (netlab's wait_ready waits for both)
            if self.config.http.listen is not None:
                stack.push_async_callback(self._stop_http)
                await self._start_http(self.config.http.listen)
        except BaseException:
            log.error("start-up failed; undoing what was started")
            await stack.aclose()
            self._cancel_browser_tick()
            raise
        self._stack = stack
        self.ready.set()
        log.info(
            "mdns-gateway ready: %d VLAN(s): %s",
            len(self.config.vlans),
            ", ".join(f"{n} on {v.interface}" for n, v in self.config.vlans.items()) or "-",
        )

    def _dns_listeners(self) -> list[Listener]:
        listeners = [Listener(a, None) for a in self.config.dns.listen]
        listeners += [
            Listener(a, view)
            for view, addrs in self.config.dns.view_listeners.items()
            for a in addrs
        ]
        return listeners

    def _cancel_browser_tick(self) -> None:
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None

    async def stop(self) -> None:
        """Unwind start-up: HTTP, watcher, jobs, chrony's goodbyes, DNS, the publisher's
        goodbyes, mDNS sockets."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        self._cancel_browser_tick()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        await self.start()  # a failed start has unwound itself
        self.memory.manage_collector(loop.time())
        try:
            await self.stopping.wait()
        finally:
            log.info("shutting down")
            await self.stop()
