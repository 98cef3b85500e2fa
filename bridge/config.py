"""YAML configuration -> frozen, typed Config. Every error names the file, the key and the fix.

Runtime code never reads files or the environment: it gets a Config. The embedded default
(no --config) turns every LAN segment (bridge/lan.py) into a VLAN.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.name
import yaml

from . import const, lan
from .interfaces import list_interfaces

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = tuple[str, int]  # (host, port)

_VLAN_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ALL_VIEW = "*"


class ConfigError(Exception):
    """The configuration is invalid; the message lists every problem with its key and fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class VlanConfig:
    name: str
    interface: str
    domain: dns.name.Name  # the VLAN's wide-area DNS-SD domain, e.g. trusted.home.arpa.
    subnets: tuple[IPNetwork, ...] = ()  # empty: the interface's own prefixes, read at run time


@dataclass(frozen=True, slots=True)
class DnsConfig:
    listen: tuple[Address, ...] = (("127.0.0.1", const.DNS_DEFAULT_PORT),)
    view_listeners: Mapping[str, tuple[Address, ...]] = field(default_factory=dict)
    browse_domain: dns.name.Name = field(default_factory=lambda: dns.name.from_text("home.arpa."))
    max_ttl: int = const.DNS_MAX_TTL  # s; answers carry min(remaining mDNS TTL, this)
    negative_ttl: int = const.DNS_NEGATIVE_TTL  # s; TTL of the SOA in NXDOMAIN/NODATA
    default_view: str | None = None  # view for clients outside every VLAN subnet; None: REFUSED
    ondemand_timeout: float = const.DNS_ONDEMAND_TIMEOUT  # s; cache-miss wait for mDNS answers


@dataclass(frozen=True, slots=True)
class HttpConfig:
    listen: Address | None = ("127.0.0.1", 9353)


@dataclass(frozen=True, slots=True)
class ChronyServer:
    """One chronyd whose NTP service is advertised while it is healthy."""

    name: str  # DNS label: the mDNS instance name and, by default, the SRV target host name
    control: Address | str  # chronyd command port (host, port), or its unix socket path
    # VLAN -> addresses where this server's NTP service is reached; empty: the gateway's own
    # addresses on each advertised VLAN (a chronyd on the router itself)
    addresses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    host: str = ""  # SRV target host label (default: name)
    priority: int = 0  # SRV priority: lower is preferred (default: position in the list)
    weight: int = 0  # SRV weight among servers of equal priority
    nts: bool = False  # also advertise _ntske._tcp (NTS key establishment, port 4460)


@dataclass(frozen=True, slots=True)
class ChronyConfig:
    servers: tuple[ChronyServer, ...]
    max_offset_seconds: float = const.CHRONY_MAX_OFFSET  # s; |system time offset| bound
    vlans: tuple[str, ...] = ()  # VLANs the service is advertised on (all of them by default)


@dataclass(frozen=True, slots=True)
class ReflectorConfig:
    """Multicast reflection between VLANs (``reflect: true`` policies decide what crosses)."""

    enabled: bool = False
    rate: float = const.REFLECT_RATE  # packets/s per VLAN and direction (token bucket refill)
    burst: int = const.REFLECT_BURST  # packets; token bucket depth per VLAN and direction


@dataclass(frozen=True, slots=True)
class Config:
    vlans: Mapping[str, VlanConfig]
    dns: DnsConfig = DnsConfig()
    http: HttpConfig = HttpConfig()
    policies: Path | None = None
    max_records: int = const.STORE_MAX_RECORDS
    source: str = "<embedded default>"
    chrony: ChronyConfig | None = None  # None: no NTP service advertised
    reflector: ReflectorConfig = ReflectorConfig()  # disabled unless 'reflector: {enabled: true}'


# --- loading -------------------------------------------------------------------------------


def load(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [f"{p}: cannot read: {exc.strerror}; fix: check the --config path"]
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(
            [
                f"{p}:{where}: not valid YAML ({getattr(exc, 'problem', exc)});"
                " fix: correct the syntax"
            ]
        ) from None
    return from_dict(data if data is not None else {}, str(p), base=p.parent)


def embedded_default() -> Config:
    """Every LAN segment (bridge.lan.choose: up, multicast, neither the WAN nor a container,
    tunnel or bridge port) as a VLAN; DNS on loopback port 5300. Logs the choice once."""
    choice = lan.choose(lan.read_links(list_interfaces()))
    log.info("%s", choice.describe())
    vlans: dict[str, VlanConfig] = {}
    for ifname in choice.vlans:
        name = _vlan_name_from(ifname)
        vlans[name] = VlanConfig(name, ifname, dns.name.from_text(f"{name}.home.arpa."))
    port = const.DNS_DEFAULT_PORT
    return Config(
        vlans=vlans,
        dns=DnsConfig(listen=(("127.0.0.1", port), ("::1", port)), default_view=ALL_VIEW),
    )


def _vlan_name_from(ifname: str) -> str:
    name = re.sub(r"[^a-z0-9-]", "-", ifname.lower()).strip("-") or "vlan"
    return name[:63]


_TOP_KEYS = {"vlans", "dns", "http", "policies", "cache", "chrony", "reflector"}
_REFLECTOR_KEYS = {"enabled", "rate", "burst"}
_DNS_KEYS = {
    "listen",
    "view_listeners",
    "browse_domain",
    "max_ttl",
    "negative_ttl",
    "default_view",
    "ondemand_timeout",
}
_VLAN_KEYS = {"interface", "domain", "subnets"}


def from_dict(data: Any, source: str, base: Path | None = None) -> Config:
    problems: list[str] = []

    def bad(key: str, problem: str, fix: str) -> None:
        problems.append(f"{source}: {key}: {problem}; fix: {fix}")

    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"{source}: top level: expected a mapping, got "
                f"{type(data).__name__}; fix: start with 'vlans:'"
            ]
        )
    _unknown_keys(data, _TOP_KEYS, "", bad)

    vlans: dict[str, VlanConfig] = {}
    raw_vlans = data.get("vlans")
    if not isinstance(raw_vlans, dict) or not raw_vlans:
        bad(
            "vlans",
            "missing or empty",
            "add e.g. 'vlans: {trusted: {interface: br10, domain: trusted.home.arpa.}}'",
        )
        raw_vlans = {}
    seen_if: dict[str, str] = {}
    for name, spec in raw_vlans.items():
        key = f"vlans.{name}"
        if not isinstance(name, str) or not _VLAN_NAME.match(name):
            bad(key, "VLAN names are lower-case letters, digits and '-'", "rename the VLAN")
            continue
        if name == ALL_VIEW:
            bad(key, "'*' is reserved", "rename the VLAN")
            continue
        if not isinstance(spec, dict):
            bad(key, "expected a mapping", "give 'interface:' and 'domain:'")
            continue
        _unknown_keys(spec, _VLAN_KEYS, key, bad)
        iface = spec.get("interface")
        if not isinstance(iface, str) or not iface or len(iface) > 15:
            bad(f"{key}.interface", "missing or not an interface name", "e.g. 'interface: br10'")
            continue
        if iface in seen_if:
            bad(
                f"{key}.interface",
                f"{iface} is already VLAN {seen_if[iface]}'s interface",
                "give each VLAN its own interface",
            )
        seen_if[iface] = name
        domain = _name(spec.get("domain", f"{name}.home.arpa."), f"{key}.domain", bad)
        subnets: list[IPNetwork] = []
        for i, s in enumerate(spec.get("subnets") or []):
            try:
                subnets.append(ipaddress.ip_network(str(s), strict=False))
            except ValueError:
                bad(f"{key}.subnets[{i}]", f"{s!r} is not a network", "e.g. 10.10.0.0/24")
        if domain is not None:
            vlans[name] = VlanConfig(name, iface, domain, tuple(subnets))
    domains = [v.domain for v in vlans.values()]
    for v in vlans.values():
        if domains.count(v.domain) > 1:
            bad(
                f"vlans.{v.name}.domain",
                f"{v.domain} is used by more than one VLAN",
                "give each VLAN its own domain",
            )
        if v.domain.is_subdomain(dns.name.from_text("local.")):
            bad(
                f"vlans.{v.name}.domain",
                "must not be under local.",
                "use a home.arpa. name, e.g. trusted.home.arpa.",
            )

    dns_cfg = _dns(data.get("dns") or {}, vlans, bad)
    http = HttpConfig()
    raw_http = data.get("http")
    if raw_http is not None:
        if not isinstance(raw_http, dict) or set(raw_http) - {"listen"}:
            bad(
                "http", "expected a mapping with 'listen:'", "e.g. 'http: {listen: 127.0.0.1:9353}'"
            )
        elif raw_http.get("listen") in (None, False, ""):
            http = HttpConfig(None)
        else:
            addr = _address(raw_http["listen"], "http.listen", bad)
            http = HttpConfig(addr)

    policies: Path | None = None
    raw_pol = data.get("policies")
    if raw_pol is not None:
        if not isinstance(raw_pol, str):
            bad("policies", "expected a directory path", "e.g. 'policies: ./policies'")
        else:
            policies = Path(raw_pol)
            if not policies.is_absolute() and base is not None:
                policies = base / policies

    max_records = const.STORE_MAX_RECORDS
    raw_cache = data.get("cache")
    if raw_cache is not None:
        if not isinstance(raw_cache, dict) or set(raw_cache) - {"max_records"}:
            bad(
                "cache",
                "expected a mapping with 'max_records:'",
                "e.g. 'cache: {max_records: 50000}'",
            )
        else:
            max_records = _int(
                raw_cache.get("max_records", max_records), "cache.max_records", 100, 10_000_000, bad
            )
    chrony = _chrony(data["chrony"], vlans, bad) if data.get("chrony") is not None else None
    reflector = _reflector(data.get("reflector"), bad)
    if problems:
        raise ConfigError(problems)
    return Config(vlans, dns_cfg, http, policies, max_records, source, chrony, reflector)


def _reflector(raw: Any, bad: Any) -> ReflectorConfig:
    if raw is None:
        return ReflectorConfig()
    if not isinstance(raw, dict):
        bad("reflector", "expected a mapping", "e.g. 'reflector: {enabled: true}'")
        return ReflectorConfig()
    _unknown_keys(raw, _REFLECTOR_KEYS, "reflector", bad)
    enabled = raw.get("enabled", False)
    if not isinstance(enabled, bool):
        bad("reflector.enabled", f"{enabled!r} is not true or false", "write 'enabled: true'")
        enabled = False
    return ReflectorConfig(
        enabled=enabled,
        rate=_float(raw.get("rate", const.REFLECT_RATE), "reflector.rate", 1.0, 1_000_000.0, bad),
        burst=_int(raw.get("burst", const.REFLECT_BURST), "reflector.burst", 1, 1_000_000, bad),
    )


def _dns(raw: Any, vlans: Mapping[str, VlanConfig], bad: Any) -> DnsConfig:
    if not isinstance(raw, dict):
        bad("dns", "expected a mapping", "e.g. 'dns: {listen: [\"127.0.0.1:5300\"]}'")
        return DnsConfig()
    _unknown_keys(raw, _DNS_KEYS, "dns", bad)
    listen = tuple(
        a
        for i, x in enumerate(_list(raw.get("listen", ["127.0.0.1:5300"]), "dns.listen", bad))
        if (a := _address(x, f"dns.listen[{i}]", bad)) is not None
    )
    views: dict[str, tuple[Address, ...]] = {}
    raw_views = raw.get("view_listeners") or {}
    if not isinstance(raw_views, dict):
        bad(
            "dns.view_listeners",
            "expected a mapping of view to addresses",
            "e.g. '{trusted: [\"127.0.0.1:5310\"]}'",
        )
        raw_views = {}
    for view, addrs in raw_views.items():
        if view not in vlans and view != ALL_VIEW:
            bad(
                f"dns.view_listeners.{view}",
                "not a configured VLAN",
                f"use one of {', '.join(sorted(vlans)) or '(no VLANs)'} or '*'",
            )
            continue
        views[view] = tuple(
            a
            for i, x in enumerate(_list(addrs, f"dns.view_listeners.{view}", bad))
            if (a := _address(x, f"dns.view_listeners.{view}[{i}]", bad)) is not None
        )
    every = list(listen) + [a for v in views.values() for a in v]
    for a in {a for a in every if every.count(a) > 1}:
        bad("dns", f"{a[0]}:{a[1]} is listed more than once", "give each listener its own port")
    browse = _name(raw.get("browse_domain", "home.arpa."), "dns.browse_domain", bad)
    default_view = raw.get("default_view")
    if default_view is not None and default_view not in vlans and default_view != ALL_VIEW:
        bad(
            "dns.default_view",
            f"{default_view!r} is not a configured VLAN",
            f"use one of {', '.join(sorted(vlans))}, '*' (sees every VLAN) or leave it out",
        )
        default_view = None
    return DnsConfig(
        listen=listen,
        view_listeners=views,
        browse_domain=browse or dns.name.from_text("home.arpa."),
        max_ttl=_int(raw.get("max_ttl", const.DNS_MAX_TTL), "dns.max_ttl", 1, 86400, bad),
        negative_ttl=_int(
            raw.get("negative_ttl", const.DNS_NEGATIVE_TTL), "dns.negative_ttl", 0, 86400, bad
        ),
        default_view=default_view,
        ondemand_timeout=_float(
            raw.get("ondemand_timeout", const.DNS_ONDEMAND_TIMEOUT),
            "dns.ondemand_timeout",
            0.0,
            1.9,
            bad,
        ),
    )


def _unknown_keys(raw: Mapping[Any, Any], allowed: set[str], prefix: str, bad: Any) -> None:
    """Typos are errors: every key the section does not know, with the keys it does."""
    for k in sorted(set(raw) - allowed, key=str):
        bad(
            f"{prefix}.{k}" if prefix else str(k),
            "unknown key",
            f"use one of {', '.join(sorted(allowed))}",
        )


def _list(x: Any, key: str, bad: Any) -> list[Any]:
    if isinstance(x, list):
        return x
    if isinstance(x, str):
        return [x]
    bad(key, "expected a list of addresses", 'e.g. ["127.0.0.1:5300"]')
    return []


def _address(x: Any, key: str, bad: Any) -> Address | None:
    """'127.0.0.1:5300', '[::1]:5300' or '::1' (default port) -> (host, port)."""
    text = str(x).strip()
    port = const.DNS_DEFAULT_PORT
    host = text
    m = re.match(r"^\[(?P<h>[^\]]+)\](:(?P<p>\d+))?$", text)
    if m:
        host, port = m.group("h"), int(m.group("p") or port)
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        if not p.isdigit():
            bad(key, f"{text!r}: port is not a number", "write HOST:PORT, e.g. 127.0.0.1:5300")
            return None
        port = int(p)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        bad(
            key,
            f"{text!r} is not an IP address",
            "write HOST:PORT, e.g. 127.0.0.1:5300 or [::1]:5300",
        )
        return None
    if ip.is_unspecified:
        bad(
            key,
            f"{text!r} is a wildcard address; replies must come from the exact address queried",
            "list each address to listen on",
        )
        return None
    if not 0 < port < 65536:
        bad(key, f"port {port} out of range", "use 1-65535")
        return None
    return (str(ip), port)


def _name(x: Any, key: str, bad: Any) -> dns.name.Name | None:
    try:
        name = dns.name.from_text(str(x))
    except Exception as exc:  # dnspython raises several types for bad names
        bad(key, f"{x!r} is not a domain name ({exc})", "e.g. trusted.home.arpa.")
        return None
    if name == dns.name.root:
        bad(key, "the root is not a domain we can serve", "e.g. trusted.home.arpa.")
        return None
    return name


def _int(x: Any, key: str, lo: int, hi: int, bad: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi:
        bad(key, f"{x!r} is not a whole number from {lo} to {hi}", f"set a value in {lo}..{hi}")
        return lo
    return x


def _float(x: Any, key: str, lo: float, hi: float, bad: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not lo <= x <= hi:
        bad(key, f"{x!r} is not a number from {lo} to {hi}", f"set a value in {lo}..{hi}")
        return lo
    return float(x)


_CHRONY_KEYS = {"servers", "max_offset_seconds", "vlans"}
_CHRONY_SERVER_KEYS = {"name", "control", "addresses", "host", "priority", "weight", "nts"}
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _chrony(raw: Any, vlans: Mapping[str, VlanConfig], bad: Any) -> ChronyConfig | None:
    example = "e.g. 'chrony: {servers: [{name: router, control: \"127.0.0.1:323\"}]}'"
    if not isinstance(raw, dict):
        bad("chrony", "expected a mapping", example)
        return None
    _unknown_keys(raw, _CHRONY_KEYS, "chrony", bad)
    raw_servers = raw.get("servers")
    if not isinstance(raw_servers, list) or not raw_servers:
        bad("chrony.servers", "missing or empty", example)
        raw_servers = []
    servers: list[ChronyServer] = []
    names: set[str] = set()
    hosts: set[str] = set()
    for i, spec in enumerate(raw_servers):
        key = f"chrony.servers[{i}]"
        if not isinstance(spec, dict):
            bad(key, "expected a mapping", 'e.g. {name: router, control: "127.0.0.1:323"}')
            continue
        _unknown_keys(spec, _CHRONY_SERVER_KEYS, key, bad)
        name = spec.get("name")
        if not isinstance(name, str) or not _LABEL.match(name):
            bad(
                f"{key}.name",
                f"{name!r} is not a DNS label (lower-case letters, digits, '-')",
                "e.g. 'name: router'",
            )
            continue
        if name in names:
            bad(f"{key}.name", f"{name} is listed twice", "give each server its own name")
        names.add(name)
        host = spec.get("host", name)
        if not isinstance(host, str) or not _LABEL.match(host):
            bad(f"{key}.host", f"{host!r} is not a DNS label", "e.g. 'host: router'")
            host = name
        if host in hosts:
            bad(
                f"{key}.host",
                f"host name {host} is used by another server",
                "give each server its own host name",
            )
        hosts.add(host)
        ctl = _control(spec.get("control"), f"{key}.control", bad)
        addresses: dict[str, tuple[str, ...]] = {}
        raw_addrs = spec.get("addresses") or {}
        if not isinstance(raw_addrs, dict):
            bad(
                f"{key}.addresses",
                "expected a mapping of VLAN to addresses",
                "e.g. '{trusted: 10.10.0.254}'",
            )
            raw_addrs = {}
        for vlan, addrs in raw_addrs.items():
            akey = f"{key}.addresses.{vlan}"
            if vlan not in vlans:
                bad(akey, "not a configured VLAN", f"use one of {', '.join(sorted(vlans))}")
                continue
            items = addrs if isinstance(addrs, list) else [addrs]
            good: list[str] = []
            for a in items:
                try:
                    good.append(str(ipaddress.ip_address(str(a))))
                except ValueError:
                    bad(akey, f"{a!r} is not an IP address", "e.g. 10.10.0.254 or fd00:10::254")
            if good:
                addresses[vlan] = tuple(good)
        priority = _int(spec.get("priority", i), f"{key}.priority", 0, 65535, bad)
        weight = _int(spec.get("weight", 0), f"{key}.weight", 0, 65535, bad)
        nts = spec.get("nts", False)
        if not isinstance(nts, bool):
            bad(f"{key}.nts", f"{nts!r} is not true or false", "write 'nts: true' or leave it out")
            nts = False
        if ctl is not None:
            servers.append(ChronyServer(name, ctl, addresses, host, priority, weight, nts))
    max_offset = _float(
        raw.get("max_offset_seconds", const.CHRONY_MAX_OFFSET),
        "chrony.max_offset_seconds",
        1e-6,
        10.0,
        bad,
    )
    raw_vlans = raw.get("vlans", ["*"])
    if isinstance(raw_vlans, str):
        raw_vlans = [raw_vlans]
    if not isinstance(raw_vlans, list):
        bad("chrony.vlans", "expected a list of VLAN names", "e.g. '[\"*\"]' (every VLAN)")
        raw_vlans = ["*"]
    chosen: list[str] = []
    for v in raw_vlans:
        if v == ALL_VIEW:
            chosen.extend(n for n in vlans if n not in chosen)
        elif v in vlans:
            if v not in chosen:
                chosen.append(v)
        else:
            bad(
                "chrony.vlans",
                f"{v!r} is not a configured VLAN",
                f"use '*' or some of {', '.join(sorted(vlans))}",
            )
    return ChronyConfig(tuple(servers), max_offset, tuple(chosen))


def _control(x: Any, key: str, bad: Any) -> Address | str | None:
    """chronyd's command socket: '/run/chrony/chronyd.sock', or HOST[:PORT] (port 323)."""
    if x is None:
        bad(
            key,
            "missing",
            "chronyd's command port, e.g. 'control: \"127.0.0.1:323\"', or "
            "its unix socket, e.g. 'control: /run/chrony/chronyd.sock'",
        )
        return None
    text = str(x).strip()
    if text.startswith("/"):
        return text
    port = const.CHRONY_COMMAND_PORT
    if (text.startswith("[") and "]:" not in text) or text.count(":") == 0:
        text = f"{text}:{port}"
    elif text.count(":") > 1 and not text.startswith("["):
        text = f"[{text}]:{port}"
    return _address(text, key, bad)
