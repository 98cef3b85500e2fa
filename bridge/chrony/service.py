"""The asyncio shell: polls every chronyd, drives the NTP responder and pins the records."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable, Sequence

import dns.name
import dns.rdata

from .. import const
from ..configsections import ChronyConfig
from ..mdns.links import Links
from ..mdns.responder import Responder, ResponderShell, Sender, Spec
from ..store import Store
from .chronyc import QueryFn, query_chronyd
from .health import ChronyError, ServerState, Source, Tracking, parse_report
from .records import ntp_spec, server_addresses, store_records

log = logging.getLogger(__name__)


class ChronyService:
    """Polls the chronyds, drives the NTP responder and pins the records in the store.

    ``poll_once`` is its periodic job (``bridge/app.py`` schedules it and feeds
    :attr:`shell`'s ``on_packet`` with ingest's packets); ``send`` is the mDNS transport's,
    ``clock`` the event loop's time.
    """

    def __init__(
        self,
        config: ChronyConfig,
        store: Store,
        links: Links,
        send: Sender,
        clock: Callable[[], float],
        query: QueryFn | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.links = links
        self.clock = clock
        self.states = {s.name: ServerState(s) for s in config.servers}
        self.responder = Responder()
        self.shell = ResponderShell(self.responder, links, send)
        self.responder.listeners.append(lambda vlan, key: self.sync())
        self._query = query
        self._chronyc = shutil.which("chronyc") or "chronyc"
        self._pinned: set[tuple[str, dns.name.Name, int, dns.rdata.Rdata]] = set()
        self._published: dict[tuple[str, str], Spec] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # set by start(): the shell runs
        self.withdrawals = 0

    # --- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the responder's shell; the polls are the caller's periodic job."""
        self._loop = asyncio.get_running_loop()
        self.shell.start(self._loop)
        log.info(
            "chrony: watching %s; advertising on %s",
            ", ".join(f"{s.name} ({_ctl(s.control)})" for s in self.config.servers),
            ", ".join(self.config.vlans) or "no VLAN",
        )

    async def stop(self) -> None:
        """Goodbyes for everything advertised, and the pinned records gone (after the polls)."""
        if self._loop is not None:
            self.shell.emit(self.responder.withdraw_all(self.clock()))
        self._published.clear()
        self._apply_store(set())
        self.shell.close()

    async def poll_once(self) -> None:
        await asyncio.gather(*(self._poll(st) for st in self.states.values()))
        self.sync()

    async def _poll(self, st: ServerState) -> None:
        assert self._loop is not None
        error = ""
        tracking: Tracking | None = None
        sources: list[Source] = []
        try:
            if self._query is not None:
                text = await self._query(st.server.control)
            else:
                text = await query_chronyd(st.server.control, self._chronyc)
            tracking, sources = parse_report(text)
        except ChronyError as exc:
            error = str(exc)
        was = st.health
        changed = st.update(tracking, sources, self.config.max_offset_seconds, self.clock(), error)
        if changed and not st.advertised:
            self.withdrawals += 1
            log.warning(
                "chrony %s: unhealthy (%s: %s); withdrawing its NTP service",
                st.server.name,
                st.health.reason,
                st.health.detail,
            )
        elif changed:
            log.info(
                "chrony %s: healthy (%s); advertising its NTP service",
                st.server.name,
                st.health.detail,
            )
        elif was.reason != st.health.reason:
            log.info("chrony %s: %s (%s)", st.server.name, st.health.reason, st.health.detail)

    # --- publishing --------------------------------------------------------------------------

    def own_addresses(self, vlan: str) -> Sequence[str]:
        link = self.links.by_vlan.get(vlan)
        if link is None or not link.up:
            return ()
        return link.addresses

    def desired(self) -> dict[tuple[str, str], Spec]:
        out: dict[tuple[str, str], Spec] = {}
        for st in self.states.values():
            if not st.advertised:
                continue
            for vlan in self.config.vlans:
                link = self.links.by_vlan.get(vlan)
                if link is None or not link.up:
                    continue
                addrs = server_addresses(st.server, vlan, self.own_addresses)
                if addrs:
                    out[(vlan, f"ntp:{st.server.name}")] = ntp_spec(st.server, st.tracking, addrs)
        return out

    def sync(self) -> None:
        """Bring the responder and the store in line with the servers' health (idempotent)."""
        if self._loop is None:
            return
        now = self.clock()
        want = self.desired()
        out = []
        for key in [k for k in self._published if k not in want]:
            out += self.responder.withdraw(key[0], key[1], now)
            del self._published[key]
        for key, spec in want.items():
            out += self.responder.publish(key[0], key[1], spec, now)
            self._published[key] = spec
        self.shell.emit(out)
        records: set[tuple[str, dns.name.Name, int, dns.rdata.Rdata]] = set()
        for (vlan, reg), spec in self._published.items():
            labels = self.responder.labels(vlan, reg)
            if labels is None:
                continue
            for name, rdtype, rdata in store_records(spec, labels[0], labels[1]):
                records.add((vlan, name, rdtype, rdata))
        self._apply_store(records)

    def _apply_store(self, records: set[tuple[str, dns.name.Name, int, dns.rdata.Rdata]]) -> None:
        now = self.clock() if self._loop is not None else 0.0
        self.store.repin(self._pinned, records, const.OWN_RECORD_TTL, now)
        self._pinned = records

    def advertised_on(self, server: str) -> list[str]:
        return sorted(v for v, k in self._published if k == f"ntp:{server}")


def _ctl(control: tuple[str, int] | str) -> str:
    return control if isinstance(control, str) else f"{control[0]}:{control[1]}"
