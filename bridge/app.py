"""Builds the components from a Config, wires their events, owns the tasks, reload and shutdown."""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import const
from .config import ALL_VIEW, Config
from .dnsfront.answer import Answers, view_by_address
from .dnsfront.ondemand import OnDemand
from .dnsfront.resolver import Resolver, View, Zones
from .dnsfront.server import DnsServer, Listener
from .mdns.browser import Browser
from .mdns.ingest import Ingest
from .mdns.links import Links
from .mdns.transport import MdnsTransport
from .memory import MemoryKeeper
from .policy import PolicyEngine, PolicyError, default_engine, load_policy_dir
from .policy.watch import PolicyWatcher
from .store import Store

log = logging.getLogger(__name__)


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


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config.max_records)
        self.links = Links(config.vlans)
        self.transport = MdnsTransport(self._on_mdns)
        self.ingest = Ingest(self.store, self.links)
        self.browser = Browser(self.store, self.links, self.transport.send)
        self.resolver = Resolver(
            self.store, self._zones(), config.dns.max_ttl, config.dns.negative_ttl
        )
        self.ondemand = OnDemand(self.store, self.browser.ask, config.dns.ondemand_timeout)
        self.answers = Answers(self.resolver, self.ondemand)
        self.server = DnsServer(
            self.answers,
            self.ondemand.lookup,
            view_by_address(self.links.vlan_of_address, config.dns.default_view),
        )
        self.engine: PolicyEngine = default_engine(config.vlans)
        self.policy_error: str | None = None
        self.policy_rejections = 0
        self.watcher: PolicyWatcher | None = None
        # components that precompute from the policy (the reflector) subscribe here
        self.engine_hooks: list[Callable[[PolicyEngine], None]] = []
        self.extra_collectors: list[Any] = []  # metrics of optional components (chrony, ...)
        self.http: Any = None
        self.chrony: Any = None  # NTP advertiser bound to chronyd's health (issue 5)
        if config.chrony is not None:
            from .chrony import ChronyService

            self.chrony = ChronyService(self, config.chrony)
        self.reflector: Any = None  # multicast reflection between VLANs (issue 4)
        if config.reflector.enabled:
            from .reflector import Reflector, ReflectorCollector, ReflectorGlue

            reflector = Reflector(list(config.vlans), config.reflector, self.engine)
            self.reflector = ReflectorGlue(
                reflector, self.links, self.transport.send, time.monotonic
            )
            self.ingest.listeners.append(self.reflector.on_packet)
            self.engine_hooks.append(self.reflector.set_policy)
            self.extra_collectors.append(ReflectorCollector(reflector))
            log.info(
                "reflector enabled: %.0f packets/s per VLAN and direction, burst %d",
                config.reflector.rate,
                config.reflector.burst,
            )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._tick_handle: asyncio.TimerHandle | None = None
        self.memory = MemoryKeeper(self.store.__len__)
        self.ready = asyncio.Event()
        self.stopping = asyncio.Event()

    # --- policy --------------------------------------------------------------------------

    def load_policies(self) -> bool:
        """(Re)load the policy directory; a bad set is rejected and the last good one stays."""
        path = self.config.policies
        if self.watcher is not None:
            return self.watcher.reload_now()
        if path is None:
            self.apply_engine(default_engine(self.config.vlans))
            return True
        if not path.exists():
            log.warning(
                "policies directory %s does not exist: every VLAN sees only itself "
                "until it is created",
                path,
            )
            self.apply_engine(default_engine(self.config.vlans))
            return True
        try:
            policies = load_policy_dir(path, self.config.vlans)
        except PolicyError as exc:
            self._policy_rejected(str(exc))
            return False
        self.apply_engine(PolicyEngine(policies, self.config.vlans))
        log.info("policies loaded: %d from %s", len(policies), path)
        return True

    def _policy_rejected(self, message: str) -> None:
        self.policy_error = message
        self.policy_rejections += 1
        log.error("policies rejected, the previous set stays in force:\n%s", message)

    def apply_engine(self, engine: PolicyEngine) -> None:
        """Swap the policy in force: new views, and every pre-rendered answer dropped."""
        self.engine = engine
        self.policy_error = None
        self.answers.set_views(self.views(engine))
        for hook in self.engine_hooks:
            hook(engine)

    def views(self, engine: PolicyEngine) -> Mapping[str, View]:
        views = {name: View(name, name, engine.view(name)) for name in self.config.vlans}
        views[ALL_VIEW] = View(ALL_VIEW, None, engine.view(ALL_VIEW))
        return views

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
        assert self._loop is not None
        try:
            self.browser.tick(self._loop.time())
        except Exception:
            log.exception("browser tick failed")

    def refresh_links(self) -> None:
        assert self._loop is not None
        joins, gone = self.links.refresh()
        if self.reflector is not None:
            self.reflector.refresh_links()
        for link in gone:
            self.transport.forget(link.ifindex)
        for link in joins:
            if link.up:
                self.transport.join(link.ifindex, link.has_v4, link.has_v6)
                self.browser.start_vlan(link.vlan, self._loop.time())
        if joins or gone:
            self.resolver.zones = self._zones()
            self.server.addresses_changed()
            self.answers.set_views(self.answers.views)

    async def _every(self, interval: float, fn: object, name: str) -> None:
        assert self._loop is not None
        while True:
            await asyncio.sleep(interval)
            try:
                fn()  # type: ignore[operator]
            except Exception:  # a periodic job must survive its own bugs
                log.exception("%s failed", name)

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        raise_file_limit()
        self.browser.wake = self._wake_browser
        self.load_policies()
        if self.config.policies is not None:
            # hot reload: a change applies within about a second (one stable poll)
            self.watcher = PolicyWatcher(
                self.config.policies,
                self.config.vlans,
                on_change=self.apply_engine,
                on_error=self._policy_rejected,
                engine=self.engine,
            )
            self.watcher.start()
        self.transport.start(loop)
        self.refresh_links()
        listeners = [Listener(a, None) for a in self.config.dns.listen]
        listeners += [
            Listener(a, view)
            for view, addrs in self.config.dns.view_listeners.items()
            for a in addrs
        ]
        await self.server.start(listeners)
        self._tasks = [
            asyncio.create_task(
                self._every(
                    const.STORE_SWEEP_INTERVAL, lambda: self.store.sweep(loop.time()), "sweep"
                )
            ),
            asyncio.create_task(
                self._every(const.MEMORY_INTERVAL, lambda: self.memory.tick(loop.time()), "memory")
            ),
            asyncio.create_task(self._every(const.MDNS_REFRESH_TICK, self._browser_tick, "browse")),
            asyncio.create_task(
                self._every(const.IFACE_RESCAN_INTERVAL, self.refresh_links, "link scan")
            ),
        ]
        if self.config.http.listen is not None:
            from .http import HttpSurface

            self.http = HttpSurface(self)
            await self.http.start(self.config.http.listen)
        if self.chrony is not None:
            await self.chrony.start()
        self.ready.set()
        log.info(
            "mdns-gateway ready: %d VLAN(s): %s",
            len(self.config.vlans),
            ", ".join(f"{n} on {v.interface}" for n, v in self.config.vlans.items()) or "-",
        )

    async def stop(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.stop()
        await self.server.close()
        if self.chrony is not None:
            await self.chrony.stop()  # goodbyes go out before the sockets close
        self.transport.close()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.load_policies)
        await self.start()
        self.memory.manage_collector(loop.time())
        try:
            await self.stopping.wait()
        finally:
            log.info("shutting down")
            await self.stop()
