"""chrony: the health of each configured chronyd, and the NTP records that health governs.

Pure parts: :func:`parse_report` (``chronyc -c -n -m tracking sources`` output), :func:`judge`
(the health rule), :class:`ServerState` (hysteresis), :func:`ntp_spec` and :func:`store_records`
(what to publish). The asyncio shell (:class:`ChronyService`) polls every chronyd each
CHRONY_POLL_INTERVAL seconds with ``chronyc``, publishes the records of healthy servers through
the mDNS responder and pins them in the store (DNS), and withdraws them (goodbyes, removal)
as soon as a server turns unhealthy. :class:`ChronyCollector` exports the metrics.

The health rule (issue 5): a server is healthy when chronyd answers, is synchronised, its
stratum is below 16 and its system time offset is within ``max_offset_seconds``.
"Synchronised" is chronyd's leap status (anything but "Not synchronised") *and* a reference
it is still following: a selected, reachable source (``*``), or its own local reference
(``local stratum N``). chronyd keeps reporting leap status "Normal" after losing every source
(measured with chrony 4.3: "Can't synchronise: no selectable sources" while ``tracking`` still
says Normal), so the leap status alone would keep advertising a server that lost its upstream.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.PTR
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.reversename
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from . import const
from .config import ChronyConfig, ChronyServer
from .mdns.responder import Responder, ResponderShell, ServiceSpec, Spec, build_records

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger(__name__)

LOCAL_REFID = 0x7F7F0101  # "LOCL": chronyd serving its own clock (``local stratum N``)
UNSYNCHRONISED = "Not synchronised"
LEAP_TXT = {
    "Normal": "normal",
    "Insert second": "insert",
    "Delete second": "delete",
    UNSYNCHRONISED: "unsynchronised",
}
NTP_TYPE = "_ntp._udp"
NTS_TYPE = "_ntske._tcp"
NTP_ALIAS = dns.name.from_text("ntp.local.")  # ntp.<VLAN domain> in DNS
NS = "mdns_gateway_chrony"
IN = dns.rdataclass.IN
_LL4 = ipaddress.IPv4Network("169.254.0.0/16")
_LL6 = ipaddress.IPv6Network("fe80::/10")


class ChronyError(Exception):
    """chronyd's answer could not be understood."""


# --- parsing (pure) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tracking:
    """``chronyc -c tracking``; times in seconds, frequencies in ppm, signs as chrony's."""

    ref_id: int
    ref_name: str
    stratum: int
    ref_time: float  # s since the epoch of the last clock update
    correction: float  # s; chrony's "System time": positive means the clock is slow
    last_offset: float
    rms_offset: float
    frequency_ppm: float  # positive: the clock runs fast (uncorrected)
    residual_ppm: float
    skew_ppm: float
    root_delay: float
    root_dispersion: float
    update_interval: float
    leap: str  # "Normal", "Insert second", "Delete second", "Not synchronised"

    @property
    def offset(self) -> float:
        """System time minus true time (positive: fast), as chrony's other offsets."""
        return -self.correction


@dataclass(frozen=True, slots=True)
class Source:
    """One line of ``chronyc -c sources``."""

    mode: str  # "^" server, "=" peer, "#" reference clock
    state: str  # "*" selected, "+" combined, "-" not combined, "?" unreachable, "x", "~"
    address: str
    stratum: int
    poll: int  # log2 s
    reach: int  # the 8-bit reachability register
    last_rx: float | None  # s since the last good sample (None: never)
    offset: float  # s; local clock minus source (positive: local clock ahead), adjusted
    measured_offset: float
    error: float  # s; error bound of the sample

    @property
    def selected(self) -> bool:
        return self.state == "*"

    @property
    def reachability(self) -> float:
        """Share of the last eight polls that were answered."""
        return bin(self.reach & 0xFF).count("1") / 8


def _num(field: str, what: str) -> float:
    try:
        return float(field)
    except ValueError:
        raise ChronyError(f"{what}: {field!r} is not a number") from None


def parse_tracking(line: str) -> Tracking:
    f = line.strip().split(",")
    if len(f) != 14:
        raise ChronyError(f"tracking: expected 14 fields, got {len(f)}: {line.strip()[:120]!r}")
    try:
        ref_id = int(f[0], 16)
    except ValueError:
        raise ChronyError(f"tracking: reference ID {f[0]!r} is not hex") from None
    n = [_num(x, "tracking") for x in f[2:13]]
    return Tracking(
        ref_id, f[1], int(n[0]), n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8], n[9], n[10], f[13]
    )


def parse_source(line: str) -> Source:
    f = line.strip().split(",")
    if len(f) != 10:
        raise ChronyError(f"sources: expected 10 fields, got {len(f)}: {line.strip()[:120]!r}")
    try:
        reach = int(f[5], 8)  # printed in octal, like the table
        stratum, poll, last = int(f[3]), int(f[4]), int(f[6])
    except ValueError:
        raise ChronyError(f"sources: bad number in {line.strip()[:120]!r}") from None
    return Source(
        f[0],
        f[1],
        f[2],
        stratum,
        poll,
        reach,
        None if last >= 0xFFFFFFFF else float(last),
        _num(f[7], "sources"),
        _num(f[8], "sources"),
        _num(f[9], "sources"),
    )


def parse_report(text: str) -> tuple[Tracking, list[Source]]:
    """The output of ``chronyc -c -n -m tracking sources``: one tracking line, then sources."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ChronyError("empty answer")
    tracking = parse_tracking(lines[0])
    sources = [parse_source(ln) for ln in lines[1 : 1 + const.CHRONY_MAX_SOURCES]]
    return tracking, sources


# --- health (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Health:
    healthy: bool
    reason: str  # ok, no_answer, unsynchronised, no_source, stratum, offset
    detail: str = ""


def synchronised(tracking: Tracking, sources: Sequence[Source]) -> bool:
    """chronyd is synchronised and still follows a reference (see the module docstring)."""
    if tracking.leap == UNSYNCHRONISED:
        return False
    if tracking.ref_id == LOCAL_REFID:
        return True
    return any(s.selected and s.reach for s in sources)


def judge(
    tracking: Tracking | None, sources: Sequence[Source], max_offset: float, error: str = ""
) -> Health:
    """The health rule: answering, synchronised, stratum < 16, |offset| <= max_offset."""
    if tracking is None:
        return Health(False, "no_answer", error or "chronyd did not answer")
    if tracking.leap == UNSYNCHRONISED:
        return Health(False, "unsynchronised", "leap status: Not synchronised")
    if not synchronised(tracking, sources):
        return Health(
            False,
            "no_source",
            "no selected, reachable source (the upstream is "
            "lost; chronyd still says " + tracking.leap + ")",
        )
    if not 1 <= tracking.stratum < 16:
        return Health(False, "stratum", f"stratum {tracking.stratum}")
    if abs(tracking.offset) > max_offset:
        return Health(
            False, "offset", f"system time offset {tracking.offset:+.6f} s is over {max_offset:g} s"
        )
    return Health(
        True,
        "ok",
        f"stratum {tracking.stratum}, offset {tracking.offset:+.6f} s, "
        f"reference {tracking.ref_name or hex(tracking.ref_id)}",
    )


class ServerState:
    """What we know of one chronyd, and whether it is advertised (pure; time passed in).

    Unhealthy withdraws at once; after a withdrawal, CHRONY_RECOVER_POLLS healthy polls in a
    row bring it back, so a server at the edge of the bound does not flap. The very first
    healthy poll after start-up advertises at once.
    """

    def __init__(self, server: ChronyServer) -> None:
        self.server = server
        self.tracking: Tracking | None = None
        self.sources: list[Source] = []
        self.health = Health(False, "no_answer", "not polled yet")
        self.advertised = False
        self.streak = 0
        self.ever_advertised = False
        self.polls = 0
        self.failures = 0
        self.last_poll: float | None = None

    def update(
        self,
        tracking: Tracking | None,
        sources: Sequence[Source],
        max_offset: float,
        now: float,
        error: str = "",
    ) -> bool:
        """Apply one poll; returns True when ``advertised`` changed."""
        self.polls += 1
        self.last_poll = now
        if tracking is None:
            self.failures += 1
        self.tracking, self.sources = tracking, list(sources)
        self.health = judge(tracking, sources, max_offset, error)
        before = self.advertised
        if not self.health.healthy:
            self.streak = 0
            self.advertised = False
        else:
            self.streak += 1
            if not self.ever_advertised or self.streak >= const.CHRONY_RECOVER_POLLS:
                self.advertised = True
                self.ever_advertised = True
        return self.advertised != before


# --- records (pure) --------------------------------------------------------------------------


def txt_for(tracking: Tracking | None) -> tuple[bytes, ...]:
    if tracking is None:
        return (b"txtvers=1",)
    leap = LEAP_TXT.get(tracking.leap, tracking.leap.lower().replace(" ", "-"))
    return (b"txtvers=1", f"stratum={tracking.stratum}".encode(), f"leap={leap}".encode())


def ntp_spec(server: ChronyServer, tracking: Tracking | None, addresses: Sequence[str]) -> Spec:
    """The responder registration of one server on one VLAN."""
    services = [
        ServiceSpec(
            server.name, NTP_TYPE, const.NTP_PORT, txt_for(tracking), server.priority, server.weight
        )
    ]
    if server.nts:
        services.append(
            ServiceSpec(
                server.name,
                NTS_TYPE,
                const.NTS_KE_PORT,
                (b"txtvers=1",),
                server.priority,
                server.weight,
            )
        )
    return Spec(server.host or server.name, tuple(addresses), tuple(services), const.OWN_RECORD_TTL)


StoreRecord = tuple[dns.name.Name, int, dns.rdata.Rdata]


def store_records(spec: Spec, host_label: str, instance_labels: list[str]) -> list[StoreRecord]:
    """What DNS answers for a registration: its mDNS records, ``ntp.local`` A/AAAA and PTRs.

    The resolver shows ``.local`` names in the VLAN's domain, so ``ntp.local`` answers as
    ``ntp.<VLAN domain>`` and the reverse PTRs point there.
    """
    out: list[StoreRecord] = [
        (r.name, r.rdtype, r.rdata) for r in build_records(spec, host_label, instance_labels)
    ]
    for addr in spec.addresses:
        if ":" in addr:
            out.append(
                (
                    NTP_ALIAS,
                    dns.rdatatype.AAAA,
                    dns.rdtypes.IN.AAAA.AAAA(IN, dns.rdatatype.AAAA, addr),
                )
            )
        else:
            out.append((NTP_ALIAS, dns.rdatatype.A, dns.rdtypes.IN.A.A(IN, dns.rdatatype.A, addr)))
        out.append(
            (
                dns.reversename.from_address(addr),
                dns.rdatatype.PTR,
                dns.rdtypes.ANY.PTR.PTR(IN, dns.rdatatype.PTR, NTP_ALIAS),
            )
        )
    return out


def advertised_addresses(addresses: Sequence[str]) -> tuple[str, ...]:
    """The addresses worth advertising: no link-local ones (they mean nothing off-link)."""
    out = []
    for a in addresses:
        ip = ipaddress.ip_address(a.split("%", 1)[0])
        if ip in (_LL4 if ip.version == 4 else _LL6) or ip.is_loopback:
            continue
        out.append(str(ip))
    return tuple(out)


def server_addresses(
    server: ChronyServer, vlan: str, own: Callable[[str], Sequence[str]]
) -> tuple[str, ...]:
    """Where ``server`` is reached on ``vlan``: its configured addresses, or ours."""
    if server.addresses:
        return tuple(server.addresses.get(vlan, ()))
    return advertised_addresses(own(vlan))


# --- talking to chronyd ----------------------------------------------------------------------


def chronyc_argv(control: tuple[str, int] | str, chronyc: str = "chronyc") -> list[str]:
    """``chronyc -c -n`` for one server: CSV, no DNS look-ups, short retries, both reports."""
    if isinstance(control, str):
        target = ["-h", control]
    else:
        target = ["-h", control[0], "-p", str(control[1])]
    return [chronyc, "-c", "-n", *target, "-m", "timeout 300", "retries 1", "tracking", "sources"]


async def query_chronyd(
    control: tuple[str, int] | str,
    chronyc: str = "chronyc",
    timeout: float = const.CHRONY_QUERY_TIMEOUT,
) -> str:
    """Run chronyc; its output, or ChronyError (not answering, killed at the deadline)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *chronyc_argv(control, chronyc),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise ChronyError(f"cannot run {chronyc}: {exc}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ChronyError(f"no answer within {timeout:g} s") from None
    if proc.returncode != 0:
        msg = (err or out).decode(errors="replace").strip().splitlines()
        raise ChronyError(msg[-1] if msg else f"chronyc exited with {proc.returncode}")
    return out.decode(errors="replace")


QueryFn = Callable[[tuple[str, int] | str], Awaitable[str]]  # control -> chronyc output


# --- the service (asyncio shell) -------------------------------------------------------------


class ChronyService:
    """Polls the chronyds, drives the responder and the store. Built by the Gateway."""

    def __init__(
        self, gateway: Gateway, config: ChronyConfig, query: QueryFn | None = None
    ) -> None:
        self.gw = gateway
        self.config = config
        self.states = {s.name: ServerState(s) for s in config.servers}
        self.responder = Responder()
        self.shell = ResponderShell(self.responder, gateway.links, gateway.transport.send)
        gateway.ingest.listeners.append(self.shell.on_packet)
        self.responder.listeners.append(lambda vlan, key: self.sync())
        self._query = query
        self._chronyc = shutil.which("chronyc") or "chronyc"
        self._pinned: set[tuple[str, dns.name.Name, int, dns.rdata.Rdata]] = set()
        self._published: dict[tuple[str, str], Spec] = {}
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.withdrawals = 0
        gateway.extra_collectors.append(ChronyCollector(self))

    # --- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.shell.start(self._loop)
        self._task = asyncio.create_task(self._run())
        log.info(
            "chrony: watching %s; advertising on %s",
            ", ".join(f"{s.name} ({_ctl(s.control)})" for s in self.config.servers),
            ", ".join(self.config.vlans) or "no VLAN",
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._loop is not None:
            self.shell.emit(self.responder.withdraw_all(self._loop.time()))
        self._published.clear()
        self._apply_store(set())
        self.shell.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:  # the poller must survive its own bugs
                log.exception("chrony poll failed")
            await asyncio.sleep(const.CHRONY_POLL_INTERVAL)

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
        changed = st.update(
            tracking, sources, self.config.max_offset_seconds, self._loop.time(), error
        )
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
        link = self.gw.links.by_vlan.get(vlan)
        if link is None or not link.up:
            return ()
        return link.addresses

    def desired(self) -> dict[tuple[str, str], Spec]:
        out: dict[tuple[str, str], Spec] = {}
        for st in self.states.values():
            if not st.advertised:
                continue
            for vlan in self.config.vlans:
                link = self.gw.links.by_vlan.get(vlan)
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
        now = self._loop.time()
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
        store = self.gw.store
        now = self._loop.time() if self._loop is not None else 0.0
        for vlan, name, rdtype, rdata in self._pinned - records:
            store.remove(vlan, name, rdtype, rdata)
        for vlan, name, rdtype, rdata in records - self._pinned:
            store.add(vlan, name, rdtype, rdata, const.OWN_RECORD_TTL, now, pinned=True)
        self._pinned = records

    def advertised_on(self, server: str) -> list[str]:
        return sorted(v for v, k in self._published if k == f"ntp:{server}")


def _ctl(control: tuple[str, int] | str) -> str:
    return control if isinstance(control, str) else f"{control[0]}:{control[1]}"


# --- metrics ---------------------------------------------------------------------------------


class ChronyCollector:
    """mdns_gateway_chrony_*: read from the service's state at scrape time."""

    def __init__(self, service: ChronyService) -> None:
        self.svc = service

    def collect(self) -> Iterator[Metric]:
        states = list(self.svc.states.values())

        def gauge(
            name: str, doc: str, value: Callable[[ServerState], float | None]
        ) -> GaugeMetricFamily:
            g = GaugeMetricFamily(f"{NS}_{name}", doc, labels=["server"])
            for st in states:
                v = value(st)
                if v is not None:
                    g.add_metric([st.server.name], v)
            return g

        def tracked(fn: Callable[[Tracking], float]) -> Callable[[ServerState], float | None]:
            return lambda st: fn(st.tracking) if st.tracking is not None else None

        yield gauge(
            "up",
            "1 if chronyd answered the last poll",
            lambda st: 0.0 if st.tracking is None else 1.0,
        )
        yield gauge(
            "healthy",
            "1 if the server passes the health rule (synchronised, "
            "stratum < 16, |offset| within the bound)",
            lambda st: 1.0 if st.health.healthy else 0.0,
        )
        yield gauge(
            "advertised",
            "1 if the server's NTP service is advertised (mDNS and DNS)",
            lambda st: 1.0 if st.advertised and self.svc.advertised_on(st.server.name) else 0.0,
        )
        yield gauge(
            "synchronised",
            "1 if chronyd is synchronised and follows a reference",
            lambda st: (
                1.0 if st.tracking is not None and synchronised(st.tracking, st.sources) else 0.0
            ),
        )
        yield gauge("stratum", "NTP stratum of chronyd", tracked(lambda t: float(t.stratum)))
        yield gauge(
            "offset_seconds",
            "System time minus true time as chronyd estimates it (positive: fast)",
            tracked(lambda t: t.offset),
        )
        yield gauge(
            "last_offset_seconds",
            "Offset estimated at the last clock update",
            tracked(lambda t: t.last_offset),
        )
        yield gauge(
            "root_delay_seconds",
            "Total network path delay to the stratum-1 source",
            tracked(lambda t: t.root_delay),
        )
        yield gauge(
            "root_dispersion_seconds",
            "Total dispersion accumulated to the stratum-1 source",
            tracked(lambda t: t.root_dispersion),
        )
        yield gauge(
            "frequency_ratio",
            "Frequency error of the system clock (positive: fast), as a ratio (x 1e6 = ppm)",
            tracked(lambda t: t.frequency_ppm * 1e-6),
        )
        yield gauge(
            "skew_ratio",
            "Estimated error bound of the frequency, as a ratio",
            tracked(lambda t: t.skew_ppm * 1e-6),
        )
        yield gauge(
            "reachable_sources",
            "Sources that answered at least one of the last eight polls",
            lambda st: (
                float(sum(1 for s in st.sources if s.reach)) if st.tracking is not None else None
            ),
        )
        c = CounterMetricFamily(f"{NS}_polls", "Polls of chronyd", labels=["server", "outcome"])
        for st in states:
            c.add_metric([st.server.name, "answered"], st.polls - st.failures)
            c.add_metric([st.server.name, "failed"], st.failures)
        yield c
        c = CounterMetricFamily(
            f"{NS}_withdrawals",
            "Times a server's NTP service was withdrawn because it turned unhealthy",
        )
        c.add_metric([], self.svc.withdrawals)
        yield c
        reach = GaugeMetricFamily(
            f"{NS}_source_reachability_ratio",
            "Share of the last eight polls of a source that were answered",
            labels=["server", "source"],
        )
        offset = GaugeMetricFamily(
            f"{NS}_source_offset_seconds",
            "Local clock minus the source at the last sample",
            labels=["server", "source"],
        )
        selected = GaugeMetricFamily(
            f"{NS}_source_selected",
            "1 for the source chronyd synchronises to",
            labels=["server", "source"],
        )
        for st in states:
            for s in st.sources:
                labels = [st.server.name, s.address]
                reach.add_metric(labels, s.reachability)
                offset.add_metric(labels, s.offset)
                selected.add_metric(labels, 1.0 if s.selected else 0.0)
        yield reach
        yield offset
        yield selected
        r = self.svc.responder
        c = CounterMetricFamily(
            f"{NS}_mdns_packets_sent", "Packets the NTP responder sent", labels=["kind"]
        )
        for kind in ("probe", "announce", "answer", "answer_unicast", "goodbye"):
            c.add_metric([kind], r.sent[kind])
        yield c
        c = CounterMetricFamily(f"{NS}_mdns_conflicts", "Name conflicts met while probing")
        c.add_metric([], r.conflicts)
        yield c
