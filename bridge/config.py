"""YAML configuration -> frozen, typed Config. Every error names the file, the key and the fix.

Runtime code never reads files or the environment: it gets a Config. The embedded default
(no --config) turns every LAN segment (bridge/lan.py) into a VLAN.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import reprlib
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dns.name
import yaml

from . import const
from .dnssd import LOCAL
from .errors import GatewayError
from .interfaces import list_interfaces

if TYPE_CHECKING:
    # the optional sections' values, imported by their parsers when the section is there
    from .configsections import (
        ChronyConfig,
        ChronyServer,
        DhcpConfig,
        KubernetesPolicies,
        LeaseFile,
        WideAreaConfig,
    )

    # the key file's reader is imported by _tsig, when wide_area: is configured
    from .widearea.tsigkey import TsigKey

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = tuple[str, int]  # (host, port)

_VLAN_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ALL_VIEW = "*"


class ConfigError(GatewayError):
    """The configuration is invalid; the message lists every problem with its key and fix."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[: const.CONFIG_MAX_PROBLEMS]
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown)} more problems")
        super().__init__("\n".join(shown))
        self.problems = shown


@dataclass(frozen=True, slots=True)
class VlanConfig:
    name: str
    interface: str
    domain: dns.name.Name  # the VLAN's wide-area DNS-SD domain, e.g. trusted.home.arpa.
    subnets: tuple[IPNetwork, ...] = ()  # empty: the interface's own prefixes, read at run time
    # record guard (bridge/mdns/ingest.py): A/AAAA records received here may name any address,
    # not only the subnets' and link-local ones (a VLAN behind a NAT or a VPN, say)
    trust_any_address: bool = False


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Response rate limiting on UDP listeners beyond loopback (bridge/dnsfront/ratelimit.py)."""

    responses_per_second: float = const.DNS_RRL_RATE  # per client /24 or /56
    window: float = const.DNS_RRL_WINDOW  # s; the longest a prefix stays limited after a flood
    slip: int = const.DNS_RRL_SLIP  # every slip-th limited response is sent as TC=1; 0: none


@dataclass(frozen=True, slots=True)
class DnsConfig:
    listen: tuple[Address, ...] = (("127.0.0.1", const.DNS_DEFAULT_PORT),)
    view_listeners: Mapping[str, tuple[Address, ...]] = field(default_factory=dict)
    browse_domain: dns.name.Name = field(default_factory=lambda: dns.name.from_text("home.arpa."))
    max_ttl: int = const.DNS_MAX_TTL  # s; answers carry min(remaining mDNS TTL, this)
    negative_ttl: int = const.DNS_NEGATIVE_TTL  # s; TTL of the SOA in NXDOMAIN/NODATA
    default_view: str | None = None  # view for clients outside every VLAN subnet; None: REFUSED
    ondemand_timeout: float = const.DNS_ONDEMAND_TIMEOUT  # s; cache-miss wait for mDNS answers
    # the gateway's own host label in every zone it serves: <label>.<zone> is each apex's NS
    # and SOA MNAME, with the router's addresses on the asking client's VLAN
    nameserver: str = const.DNS_NAMESERVER_LABEL
    # bytes; UDP answers to clients beyond loopback fit in this whatever EDNS size they ask
    max_udp_payload: int = const.DNS_UDP_CLAMP
    rate_limit: RateLimitConfig | None = RateLimitConfig()  # None: off


@dataclass(frozen=True, slots=True)
class HttpConfig:
    listen: Address | None = ("127.0.0.1", const.HTTP_DEFAULT_PORT)
    # the bearer token (read from token_file at load); required for every page but /healthz
    # and /readyz when listen is not loopback
    token: str | None = None
    token_file: Path | None = None


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
    kubernetes: KubernetesPolicies | None = None  # 'policies: {kubernetes: ...}' (then policies
    #   is None)
    wide_area: WideAreaConfig | None = None  # None: nothing is published into a DNS zone
    dhcp: DhcpConfig | None = None  # None: no lease host names


# --- loading -------------------------------------------------------------------------------


def load(path: str | Path) -> Config:
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(const.CONFIG_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            [f"{p}: cannot read: {exc.strerror}; fix: check the --config path"]
        ) from None
    if len(raw) > const.CONFIG_MAX_BYTES:
        raise ConfigError(
            [
                f"{p}: larger than {const.CONFIG_MAX_BYTES} bytes, not a configuration;"
                " fix: check the --config path"
            ]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{p}: byte {exc.start} is not UTF-8; fix: save the file as UTF-8"]
        ) from None
    return from_dict(_parse_yaml(text, p), str(p), base=p.parent)


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping names the same key twice (PyYAML would keep the last one silently)."""


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses duplicate keys and nesting deeper than CONFIG_MAX_DEPTH.

    Aliases stay allowed: PyYAML builds an aliased node once, so an alias bomb costs memory
    linear in the file; the messages about it are what must stay short (see _short).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > const.CONFIG_MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested deeper than {const.CONFIG_MAX_DEPTH} levels",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<: *base' then an own key is an override, not a duplicate
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, list | dict):
                    continue  # unhashable: the base class says so with its mark
                if key in seen:
                    raise _DuplicateKey(
                        None,
                        None,
                        f"duplicate key {_short(key)}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)


def _parse_yaml(text: str, p: Path) -> Any:
    """The document, or ConfigError for anything PyYAML (or int()) raises while reading it."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        fix = "keep one of them" if isinstance(exc, _DuplicateKey) else "correct the syntax"
        raise ConfigError([f"{p}:{where}: not valid YAML ({problem}); fix: {fix}"]) from None
    except ValueError as exc:  # e.g. an integer of more digits than int() converts
        raise ConfigError(
            [f"{p}: a value cannot be read ({_clip(str(exc))}); fix: correct or shorten it"]
        ) from None
    return data if data is not None else {}


_SHORT = reprlib.Repr()
_SHORT.maxlevel = 2
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = const.CONFIG_MESSAGE_VALUE_MAX
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxset = 4


def _short(x: Any) -> str:
    """repr() bounded in length and depth: a value in a message costs little, whatever it is."""
    try:
        return _SHORT.repr(x)
    except ValueError:  # an int too long for str()
        return f"<{type(x).__name__} too long to show>"


def _clip(text: str) -> str:
    """A key or name from the file, cut to a readable length."""
    limit = const.CONFIG_MESSAGE_VALUE_MAX
    return text if len(text) <= limit else text[: limit - 3] + "..."


def embedded_default() -> Config:
    """Every LAN segment (bridge.lan.choose: up, multicast, neither the WAN nor a container,
    tunnel or bridge port) as a VLAN; DNS on loopback port 5300. Logs the choice once."""
    from . import lan  # without --config only: two dataclasses off every other start

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


_TOP_KEYS = {
    "vlans",
    "dns",
    "http",
    "policies",
    "cache",
    "chrony",
    "reflector",
    "wide_area",
    "dhcp",
}
_DHCP_KEYS = {"leases", "publish_mdns"}
_LEASE_KEYS = {"format", "path"}
_LEASE_FORMATS = ("dnsmasq", "kea")
_REFLECTOR_KEYS = {"enabled", "rate", "burst"}
_DNS_KEYS = {
    "listen",
    "view_listeners",
    "browse_domain",
    "max_ttl",
    "negative_ttl",
    "default_view",
    "ondemand_timeout",
    "nameserver",
    "max_udp_payload",
    "rate_limit",
}
_RATE_LIMIT_KEYS = {"responses_per_second", "window", "slip"}
_VLAN_KEYS = {"interface", "domain", "subnets", "trust_any_address"}


def from_dict(
    data: Any, source: str, base: Path | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """``env``: the environment ($NODE_NAME for the Kubernetes source); default os.environ."""
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
        key = f"vlans.{_clip(str(name))}"
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
        if not isinstance(iface, str) or not iface or len(iface) > const.IFNAMSIZ_MAX:
            bad(f"{key}.interface", "missing or not an interface name", "e.g. 'interface: br10'")
            continue
        if iface in seen_if:
            bad(
                f"{key}.interface",
                f"{iface} is already VLAN {seen_if[iface]}'s interface",
                "give each VLAN its own interface",
            )
        seen_if[iface] = name
        domain = _zone(spec.get("domain", f"{name}.home.arpa."), f"{key}.domain", bad)
        subnets = _subnets(spec.get("subnets"), f"{key}.subnets", bad)
        trust_any = spec.get("trust_any_address", False)
        if not isinstance(trust_any, bool):
            bad(
                f"{key}.trust_any_address",
                f"expected true or false, got {_clip(repr(trust_any))}",
                "write 'trust_any_address: true' (or leave it out: only the VLAN's own "
                "and link-local addresses are accepted in its A/AAAA records)",
            )
            trust_any = False
        if domain is not None:
            vlans[name] = VlanConfig(name, iface, domain, subnets, trust_any)
    domains = [v.domain for v in vlans.values()]
    for v in vlans.values():
        if domains.count(v.domain) > 1:
            bad(
                f"vlans.{v.name}.domain",
                f"{v.domain} is used by more than one VLAN",
                "give each VLAN its own domain",
            )
        if v.domain.is_subdomain(LOCAL):
            bad(
                f"vlans.{v.name}.domain",
                "must not be under local.",
                "use a home.arpa. name, e.g. trusted.home.arpa.",
            )

    raw_dns = data.get("dns")
    dns_cfg = _dns({} if raw_dns is None else raw_dns, vlans, bad)
    http = HttpConfig()
    raw_http = data.get("http")
    if raw_http is not None:
        if not isinstance(raw_http, dict) or set(raw_http) - {"listen", "token_file"}:
            bad(
                "http",
                "expected a mapping with 'listen:' and optionally 'token_file:'",
                "e.g. 'http: {listen: 127.0.0.1:9353}'",
            )
        else:
            address = HttpConfig().listen
            if "listen" in raw_http:
                listen = raw_http["listen"]
                off = listen is None or listen is False  # 0 == False, yet 0 is not "off"
                address = None if off else _address(listen, "http.listen", bad)
            token, token_file = _token(raw_http.get("token_file"), base, bad)
            http = HttpConfig(address, token, token_file)
            dns_addrs = [*dns_cfg.listen, *(a for v in dns_cfg.view_listeners.values() for a in v)]
            if http.listen is not None and http.listen in dns_addrs:
                bad(
                    "http.listen",
                    f"{http.listen[0]}:{http.listen[1]} is also a DNS listener (DNS uses TCP "
                    "there too)",
                    "give HTTP its own port, e.g. 127.0.0.1:9353",
                )
    raw_policies = data.get("policies", None)
    kubernetes: KubernetesPolicies | None = None
    policies: Path | None = None
    if isinstance(raw_policies, dict):
        kubernetes = _kubernetes(raw_policies, base, bad, env)
    else:
        policies = _policies(raw_policies, "policies" in data, source, base, bad)

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
                raw_cache.get("max_records", max_records),
                "cache.max_records",
                const.CONFIG_MIN_RECORDS,
                const.CONFIG_MAX_RECORDS,
                bad,
            )
    chrony = _chrony(data["chrony"], vlans, bad) if data.get("chrony") is not None else None
    reflector = _reflector(data.get("reflector"), bad)
    raw_wide = data.get("wide_area")
    wide_area = None if raw_wide is None else _wide_area(raw_wide, base, bad)
    dhcp = _dhcp(data["dhcp"], base, bad) if data.get("dhcp") is not None else None
    if problems:
        raise ConfigError(problems)
    return Config(
        vlans,
        dns_cfg,
        http,
        policies,
        max_records,
        source,
        chrony,
        reflector,
        kubernetes,
        wide_area,
        dhcp,
    )


def _dhcp(raw: Any, base: Path | None, bad: Any) -> DhcpConfig | None:
    example = "e.g. 'dhcp: {leases: [{format: dnsmasq, path: /var/lib/misc/dnsmasq.leases}]}'"
    if not isinstance(raw, dict):
        bad("dhcp", "expected a mapping", example)
        return None
    _unknown_keys(raw, _DHCP_KEYS, "dhcp", bad)
    publish = raw.get("publish_mdns", False)
    if not isinstance(publish, bool):
        bad("dhcp.publish_mdns", f"{_short(publish)} is not true or false", "write true or false")
        publish = False
    items = raw.get("leases")
    if not isinstance(items, list) or not items:
        bad("dhcp.leases", "missing or not a list of lease files", example)
        return None
    from .configsections import DhcpConfig, LeaseFile

    files: list[LeaseFile] = []
    for i, item in enumerate(items):
        key = f"dhcp.leases[{i}]"
        if not isinstance(item, dict):
            bad(key, "expected a mapping with format and path", "e.g. '{format: kea, path: ...}'")
            continue
        _unknown_keys(item, _LEASE_KEYS, key, bad)
        fmt, path = item.get("format"), item.get("path")
        if fmt not in _LEASE_FORMATS:
            bad(f"{key}.format", f"{_short(fmt)} is not a lease file format", "use dnsmasq or kea")
            continue
        if not isinstance(path, str) or not path.strip():
            bad(
                f"{key}.path",
                f"{_short(path)} is not a file path",
                "e.g. '/var/lib/kea/kea-leases4.csv'",
            )
            continue
        p = Path(path)
        if not p.is_absolute() and base is not None:
            p = base / p
        if any(f.path == p for f in files):
            bad(f"{key}.path", f"{path!r} is listed twice", "remove one of them")
            continue
        files.append(LeaseFile(fmt, p))
    return DhcpConfig(tuple(files), publish) if files else None


def _reflector(raw: Any, bad: Any) -> ReflectorConfig:
    if raw is None:
        return ReflectorConfig()
    if not isinstance(raw, dict):
        bad("reflector", "expected a mapping", "e.g. 'reflector: {enabled: true}'")
        return ReflectorConfig()
    _unknown_keys(raw, _REFLECTOR_KEYS, "reflector", bad)
    enabled = raw.get("enabled", False)
    if not isinstance(enabled, bool):
        bad("reflector.enabled", f"{_short(enabled)} is not true or false", "write 'enabled: true'")
        enabled = False
    return ReflectorConfig(
        enabled=enabled,
        rate=_float_at(
            raw, "reflector", "rate", const.REFLECT_RATE, 1.0, const.CONFIG_MAX_REFLECT_RATE, bad
        ),
        burst=_int_at(
            raw, "reflector", "burst", const.REFLECT_BURST, 1, const.CONFIG_MAX_REFLECT_BURST, bad
        ),
    )


def _dns(raw: Any, vlans: Mapping[str, VlanConfig], bad: Any) -> DnsConfig:
    if not isinstance(raw, dict):
        bad("dns", "expected a mapping", "e.g. 'dns: {listen: [\"127.0.0.1:5300\"]}'")
        return DnsConfig()
    _unknown_keys(raw, _DNS_KEYS, "dns", bad)
    raw_listen = _list(raw.get("listen", ["127.0.0.1:5300"]), "dns.listen", bad)
    listen = tuple(
        a
        for i, x in enumerate(raw_listen)
        if (a := _address(x, f"dns.listen[{i}]", bad)) is not None
    )
    views: dict[str, tuple[Address, ...]] = {}
    raw_views = raw.get("view_listeners")
    if raw_views is None:
        raw_views = {}
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
                f"dns.view_listeners.{_clip(str(view))}",
                "not a configured VLAN",
                f"use one of {', '.join(sorted(vlans)) or '(no VLANs)'} or '*'",
            )
            continue
        views[view] = tuple(
            a
            for i, x in enumerate(_list(addrs, f"dns.view_listeners.{view}", bad))
            if (a := _address(x, f"dns.view_listeners.{view}[{i}]", bad)) is not None
        )
    if not raw_listen and not any(raw_views.values()):
        bad(
            "dns.listen",
            "empty, and no view listener either: nothing would answer DNS",
            "list at least one address, e.g. 'listen: [\"127.0.0.1:5300\"]'",
        )
    every = list(listen) + [a for v in views.values() for a in v]
    for a in {a for a in every if every.count(a) > 1}:
        bad("dns", f"{a[0]}:{a[1]} is listed more than once", "give each listener its own port")
    browse = _zone(raw.get("browse_domain", "home.arpa."), "dns.browse_domain", bad)
    default_view = raw.get("default_view")
    if default_view is not None and (
        not isinstance(default_view, str)
        or (default_view not in vlans and default_view != ALL_VIEW)
    ):
        bad(
            "dns.default_view",
            f"{_short(default_view)} is not a configured VLAN",
            f"use one of {', '.join(sorted(vlans))}, '*' (sees every VLAN) or leave it out",
        )
        default_view = None
    nameserver = raw.get("nameserver", const.DNS_NAMESERVER_LABEL)
    if not isinstance(nameserver, str) or not _LABEL.fullmatch(nameserver):
        bad(
            "dns.nameserver",
            f"{nameserver!r} is not a DNS label",
            "use lower-case letters, digits and '-' (e.g. 'ns' or the router's host name)",
        )
        nameserver = const.DNS_NAMESERVER_LABEL
    return DnsConfig(
        listen=listen,
        view_listeners=views,
        browse_domain=browse or dns.name.from_text("home.arpa."),
        max_ttl=_int(
            raw.get("max_ttl", const.DNS_MAX_TTL), "dns.max_ttl", 1, const.CONFIG_MAX_TTL, bad
        ),
        negative_ttl=_int(
            raw.get("negative_ttl", const.DNS_NEGATIVE_TTL),
            "dns.negative_ttl",
            0,
            const.CONFIG_MAX_TTL,
            bad,
        ),
        default_view=default_view,
        ondemand_timeout=_float(
            raw.get("ondemand_timeout", const.DNS_ONDEMAND_TIMEOUT),
            "dns.ondemand_timeout",
            0.0,
            const.CONFIG_MAX_ONDEMAND_TIMEOUT,
            bad,
        ),
        nameserver=nameserver,
        max_udp_payload=_int(
            raw.get("max_udp_payload", const.DNS_UDP_CLAMP),
            "dns.max_udp_payload",
            const.DNS_PLAIN_UDP_LIMIT,
            const.DNS_MAX_UDP_PAYLOAD,
            bad,
        ),
        rate_limit=_rate_limit(raw.get("rate_limit", {}), bad),
    )


def _rate_limit(raw: Any, bad: Any) -> RateLimitConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        bad(
            "dns.rate_limit",
            "expected a mapping, or null to turn it off",
            "e.g. 'rate_limit: {responses_per_second: 100, window: 15, slip: 2}'",
        )
        return RateLimitConfig()
    _unknown_keys(raw, _RATE_LIMIT_KEYS, "dns.rate_limit", bad)
    return RateLimitConfig(
        responses_per_second=_float_at(
            raw,
            "dns.rate_limit",
            "responses_per_second",
            const.DNS_RRL_RATE,
            1.0,
            const.CONFIG_MAX_RRL_RATE,
            bad,
        ),
        window=_float_at(
            raw,
            "dns.rate_limit",
            "window",
            const.DNS_RRL_WINDOW,
            1.0,
            const.CONFIG_MAX_RRL_WINDOW,
            bad,
        ),
        slip=_int_at(
            raw, "dns.rate_limit", "slip", const.DNS_RRL_SLIP, 0, const.CONFIG_MAX_RRL_SLIP, bad
        ),
    )


def _unknown_keys(raw: Mapping[Any, Any], allowed: set[str], prefix: str, bad: Any) -> None:
    """Typos are errors: every key the section does not know, with the keys it does."""
    for k in sorted(set(raw) - allowed, key=str):
        bad(
            f"{prefix}.{_clip(str(k))}" if prefix else _clip(str(k)),
            "unknown key",
            f"use one of {', '.join(sorted(allowed))}",
        )


def _list(x: Any, key: str, bad: Any) -> list[Any]:
    if isinstance(x, list):
        return x
    if isinstance(x, str):
        return [x]
    bad(key, f"{_short(x)} is not a list of addresses", 'e.g. ["127.0.0.1:5300"]')
    return []


def _address(x: Any, key: str, bad: Any) -> Address | None:
    """'127.0.0.1:5300', '[::1]:5300' or '::1' (default port) -> (host, port)."""
    if not isinstance(x, str):
        bad(
            key,
            f"{_short(x)} is not an address",
            'write HOST:PORT in quotes, e.g. "127.0.0.1:5300" or "[::1]:5300"',
        )
        return None
    text = x.strip()
    port = const.DNS_DEFAULT_PORT
    host = text
    m = re.match(r"^\[(?P<h>[^\]]+)\](:(?P<p>[0-9]{1,5}))?$", text)
    if m:
        host, port = m.group("h"), int(m.group("p") or port)
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        if not re.fullmatch(r"[0-9]{1,5}", p):
            bad(
                key,
                f"{_short(text)}: port is not a number",
                "write HOST:PORT, e.g. 127.0.0.1:5300",
            )
            return None
        port = int(p)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        bad(
            key,
            f"{_short(text)} is not an IP address",
            "write HOST:PORT, e.g. 127.0.0.1:5300 or [::1]:5300",
        )
        return None
    if ip.is_unspecified:
        bad(
            key,
            f"{_short(text)} is a wildcard address;"
            " replies must come from the exact address queried",
            "list each address to listen on",
        )
        return None
    if not 0 < port < 65536:
        bad(key, f"port {port} out of range", "use 1-65535")
        return None
    return (str(ip), port)


_ARPA = dns.name.from_text("arpa.")
_HOME_ARPA = dns.name.from_text("home.arpa.")


def _zone(x: Any, key: str, bad: Any) -> dns.name.Name | None:
    """A domain the gateway answers for: two labels at least, and no public arpa. zone.

    A top-level domain (com.) or a reverse tree (in-addr.arpa.) would make the gateway claim
    names that belong to the Internet; home.arpa. (RFC 8375) is the one arpa. zone for homes.
    """
    example = "e.g. trusted.home.arpa."
    if not isinstance(x, str) or not x:
        bad(key, f"{_short(x)} is not a domain name", example)
        return None
    try:
        name = dns.name.from_text(x)
    except Exception as exc:  # dnspython raises several types for bad names
        bad(key, f"{_short(x)} is not a domain name ({_clip(str(exc))})", example)
        return None
    if len(name) < 3:
        what = "the root" if name == dns.name.root else f"{_clip(str(name))} is a top-level domain"
        bad(key, f"{what}: the gateway would answer for names that are not its own", example)
        return None
    if name.is_subdomain(_ARPA) and not name.is_subdomain(_HOME_ARPA):
        bad(
            key,
            f"{_clip(str(name))} is under arpa. (reverse or infrastructure names)",
            f"use a home.arpa. name, {example}",
        )
        return None
    return name


def _subnets(x: Any, key: str, bad: Any) -> tuple[IPNetwork, ...]:
    """A VLAN's subnets: a list of networks (or one), each narrow enough to be a link's."""
    example = "e.g. 'subnets: [10.10.0.0/24, fd00:10::/64]'"
    if x is None:
        return ()
    items = [x] if isinstance(x, str) else x
    if not isinstance(items, list):
        bad(key, f"{_short(x)} is not a list of networks", example)
        return ()
    subnets: list[IPNetwork] = []
    for i, s in enumerate(items):
        if not isinstance(s, str):
            bad(f"{key}[{i}]", f"{_short(s)} is not a network", example)
            continue
        try:
            net = ipaddress.ip_network(s, strict=False)
        except ValueError:
            bad(f"{key}[{i}]", f"{_short(s)} is not a network", example)
            continue
        least = (
            const.VLAN_SUBNET_MIN_PREFIX_V4 if net.version == 4 else const.VLAN_SUBNET_MIN_PREFIX_V6
        )
        if net.prefixlen < least:
            bad(
                f"{key}[{i}]",
                f"{net} is wider than /{least}: every client would be in this VLAN's view and"
                " every address plausible on it",
                f"give the VLAN's own prefix, {example}",
            )
            continue
        subnets.append(net)
    return tuple(subnets)


_KUBERNETES_KEYS = {"namespace", "kubeconfig", "nodeName"}
_KUBE_EXAMPLE = "e.g. 'policies: {kubernetes: {namespace: mdns-gateway}}'"


def _kubernetes(
    raw: Mapping[Any, Any], base: Path | None, bad: Any, env: Mapping[str, str] | None
) -> KubernetesPolicies | None:
    """``policies: {kubernetes: {namespace, kubeconfig?, nodeName?}}``; the node name defaults
    to $NODE_NAME (the downward API's spec.nodeName), then the host name."""
    _unknown_keys(raw, {"kubernetes"}, "policies", bad)
    kube = raw.get("kubernetes")
    if not isinstance(kube, dict):
        bad("policies.kubernetes", f"{_short(kube)} is not a mapping", _KUBE_EXAMPLE)
        return None
    _unknown_keys(kube, _KUBERNETES_KEYS, "policies.kubernetes", bad)
    namespace = kube.get("namespace")
    ok = True
    if not isinstance(namespace, str) or not (namespace == "*" or _K8S_LABEL.fullmatch(namespace)):
        bad(
            "policies.kubernetes.namespace",
            f"{_short(namespace)} is not a namespace name (a DNS-1123 label) nor '*'",
            f"name the namespace the ServicePolicy objects live in ('*': all), {_KUBE_EXAMPLE}",
        )
        ok = False
    kubeconfig: Path | None = None
    raw_kc = kube.get("kubeconfig")
    if raw_kc is not None:
        if not isinstance(raw_kc, str) or not raw_kc.strip():
            bad(
                "policies.kubernetes.kubeconfig",
                f"{_short(raw_kc)} is not a file path",
                "give the kubeconfig file's path, or leave the key out (in-cluster account)",
            )
            ok = False
        else:
            kubeconfig = Path(raw_kc)
            if not kubeconfig.is_absolute() and base is not None:
                kubeconfig = base / kubeconfig
    environ = os.environ if env is None else env
    node = kube.get("nodeName") or environ.get("NODE_NAME") or socket.gethostname()
    if not isinstance(node, str) or not _K8S_SUBDOMAIN.fullmatch(node) or len(node) > 253:
        bad(
            "policies.kubernetes.nodeName",
            f"{_short(node)} is not a node name (a DNS-1123 subdomain)",
            "set nodeName, or $NODE_NAME from the downward API (fieldRef: spec.nodeName)",
        )
        ok = False
    if not ok:
        return None
    assert isinstance(namespace, str) and isinstance(node, str)
    from .configsections import KubernetesPolicies

    return KubernetesPolicies(namespace, node, kubeconfig)


_K8S_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_K8S_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _policies(x: Any, given: bool, source: str, base: Path | None, bad: Any) -> Path | None:
    """The policy directory, relative to the config file; never the config's own directory."""
    example = f"e.g. 'policies: ./policies', or leave the key out, or {_KUBE_EXAMPLE}"
    if x is None:
        return None
    if not isinstance(x, str) or not x.strip():
        bad("policies", f"{_short(x)} is not a directory path", example)
        return None
    path = Path(x)
    if not path.is_absolute() and base is not None:
        path = base / path
    if base is not None and path.resolve() == Path(source).resolve().parent:
        bad(
            "policies",
            f"{_short(x)} is the directory of this config file, which would be read as a policy",
            f"keep the policies in a directory of their own, {example}",
        )
        return None
    return path


def _token(x: Any, base: Path | None, bad: Any) -> tuple[str | None, Path | None]:
    """The bearer token from ``http.token_file`` (relative to the config file): its first
    line, stripped. Read here, once: the gateway never reads files at run time."""
    if x is None:
        return None, None
    fix = "point it at a readable file holding one line, e.g. made by 'openssl rand -hex 32'"
    if not isinstance(x, str) or not x.strip():
        bad("http.token_file", f"{_short(x)} is not a file path", fix)
        return None, None
    path = Path(x)
    if not path.is_absolute() and base is not None:
        path = base / path
    try:
        with path.open("rb") as f:
            data = f.read(const.HTTP_TOKEN_MAX_BYTES + 1)
    except OSError as exc:
        bad("http.token_file", f"{path}: cannot be read ({exc.strerror or exc})", fix)
        return None, path
    if len(data) > const.HTTP_TOKEN_MAX_BYTES:
        bad("http.token_file", f"{path} is over {const.HTTP_TOKEN_MAX_BYTES} bytes", fix)
        return None, path
    lines = data.decode("utf-8", "replace").strip().splitlines()
    token = lines[0].strip() if lines else ""
    if len(token) < const.HTTP_TOKEN_MIN_CHARS or any(c.isspace() for c in token):
        bad(
            "http.token_file",
            f"{path}: the token (its first line) must be at least "
            f"{const.HTTP_TOKEN_MIN_CHARS} characters without spaces",
            fix,
        )
        return None, path
    return token, path


def _int(x: Any, key: str, lo: int, hi: int, bad: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi:
        bad(
            key,
            f"{_short(x)} is not a whole number from {lo} to {hi}",
            f"set a value in {lo}..{hi}",
        )
        return lo
    return x


def _float(x: Any, key: str, lo: float, hi: float, bad: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not lo <= x <= hi:
        bad(key, f"{_short(x)} is not a number from {lo} to {hi}", f"set a value in {lo}..{hi}")
        return lo
    return float(x)


def _int_at(
    raw: Mapping[str, Any], section: str, key: str, default: int, lo: int, hi: int, bad: Any
) -> int:
    """``section.key`` of ``raw`` as a whole number in lo..hi (``default`` when absent)."""
    return _int(raw.get(key, default), f"{section}.{key}", lo, hi, bad)


def _float_at(
    raw: Mapping[str, Any],
    section: str,
    key: str,
    default: float,
    lo: float,
    hi: float,
    bad: Any,
) -> float:
    """``section.key`` of ``raw`` as a number in lo..hi (``default`` when absent)."""
    return _float(raw.get(key, default), f"{section}.{key}", lo, hi, bad)


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
    from .configsections import ChronyConfig, ChronyServer

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
                f"{_short(name)} is not a DNS label (lower-case letters, digits, '-')",
                "e.g. 'name: router'",
            )
            continue
        if name in names:
            bad(f"{key}.name", f"{name} is listed twice", "give each server its own name")
        names.add(name)
        host = spec.get("host", name)
        if not isinstance(host, str) or not _LABEL.match(host):
            bad(f"{key}.host", f"{_short(host)} is not a DNS label", "e.g. 'host: router'")
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
            akey = f"{key}.addresses.{_clip(str(vlan))}"
            if vlan not in vlans:
                bad(akey, "not a configured VLAN", f"use one of {', '.join(sorted(vlans))}")
                continue
            items = addrs if isinstance(addrs, list) else [addrs]
            good: list[str] = []
            for a in items:
                try:
                    if not isinstance(a, str):
                        raise ValueError(a)
                    good.append(str(ipaddress.ip_address(a)))
                except ValueError:
                    bad(
                        akey,
                        f"{_short(a)} is not an IP address",
                        "e.g. 10.10.0.254 or fd00:10::254",
                    )
            if good:
                addresses[vlan] = tuple(good)
        priority = _int(spec.get("priority", i), f"{key}.priority", 0, 65535, bad)
        weight = _int(spec.get("weight", 0), f"{key}.weight", 0, 65535, bad)
        nts = spec.get("nts", False)
        if not isinstance(nts, bool):
            bad(
                f"{key}.nts",
                f"{_short(nts)} is not true or false",
                "write 'nts: true' or leave it out",
            )
            nts = False
        if ctl is not None:
            servers.append(ChronyServer(name, ctl, addresses, host, priority, weight, nts))
    max_offset = _float(
        raw.get("max_offset_seconds", const.CHRONY_MAX_OFFSET),
        "chrony.max_offset_seconds",
        const.CONFIG_MIN_CHRONY_OFFSET,
        const.CONFIG_MAX_CHRONY_OFFSET,
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
        if not isinstance(v, str):
            bad("chrony.vlans", f"{_short(v)} is not a VLAN name", "e.g. '[\"*\"]' (every VLAN)")
        elif v == ALL_VIEW:
            chosen.extend(n for n in vlans if n not in chosen)
        elif v in vlans:
            if v not in chosen:
                chosen.append(v)
        else:
            bad(
                "chrony.vlans",
                f"{_short(v)} is not a configured VLAN",
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
    if not isinstance(x, str):
        bad(key, f"{_short(x)} is not an address or a socket path", 'e.g. "127.0.0.1:323"')
        return None
    text = x.strip()
    if text.startswith("/"):
        return text
    return _address(_with_port(text, const.CHRONY_COMMAND_PORT), key, bad)


def _with_port(text: str, port: int) -> str:
    """HOST, [V6] or a bare V6 address without a port -> with ``port``; HOST:PORT as given."""
    if (text.startswith("[") and "]:" not in text) or text.count(":") == 0:
        return f"{text}:{port}"
    if text.count(":") > 1 and not text.startswith("["):
        return f"[{text}]:{port}"
    return text


def with_http_listen(cfg: Config, text: str, key: str = "--http-listen") -> Config:
    """The config with HTTP on ``text`` (HOST[:PORT], the port http.listen's by default).

    For a DaemonSet on the host network: the node's address comes from the downward API
    (``$(HOST_IP)``), which a config file in a ConfigMap shared by every node cannot name.
    """
    problems: list[str] = []

    def bad(k: str, problem: str, fix: str) -> None:
        problems.append(f"{k}: {problem}; fix: {fix}")

    port = cfg.http.listen[1] if cfg.http.listen else const.HTTP_DEFAULT_PORT
    addr = _address(_with_port(text.strip(), port), key, bad)
    dns_cfg = cfg.dns
    if addr in [*dns_cfg.listen, *(a for v in dns_cfg.view_listeners.values() for a in v)]:
        bad(key, f"{text} is also a DNS listener", "give HTTP a port of its own")
    if problems or addr is None:
        raise ConfigError(problems)
    return replace(cfg, http=replace(cfg.http, listen=addr))  # the token stays


_WIDE_AREA_KEYS = {"server", "zone", "tsig", "ttl", "reconcile_interval"}
_TSIG_KEYS = {"name", "algorithm", "secret_file"}
_WIDE_AREA_EXAMPLE = (
    'e.g. \'wide_area: {server: "192.0.2.53:53", zone: dnssd.example.com., tsig: {name: '
    "mdns-gateway., algorithm: hmac-sha256, secret_file: /etc/mdns-gateway/tsig.key}}'"
)


def _wide_area(raw: Any, base: Path | None, bad: Any) -> WideAreaConfig | None:
    """The ``wide_area:`` section; the TSIG secret file is read and checked here (readable,
    not world-readable, one of the formats bridge/widearea/tsigkey.py reads)."""
    if not isinstance(raw, dict):
        bad("wide_area", "expected a mapping", _WIDE_AREA_EXAMPLE)
        return None
    _unknown_keys(raw, _WIDE_AREA_KEYS, "wide_area", bad)
    server = None
    if "server" not in raw:
        bad("wide_area.server", "missing", 'the zone\'s primary, e.g. "192.0.2.53:53"')
    else:
        server = _address(raw["server"], "wide_area.server", bad)
    zone = None
    if "zone" not in raw:
        bad("wide_area.zone", "missing", "the zone to publish into, e.g. dnssd.example.com.")
    else:
        zone = _zone(raw["zone"], "wide_area.zone", bad)
    ttl = _int(
        raw.get("ttl", const.WIDEAREA_DEFAULT_TTL),
        "wide_area.ttl",
        const.CONFIG_MIN_WIDEAREA_TTL,
        const.CONFIG_MAX_TTL,
        bad,
    )
    interval = _float(
        raw.get("reconcile_interval", const.WIDEAREA_RECONCILE_INTERVAL),
        "wide_area.reconcile_interval",
        const.CONFIG_MIN_RECONCILE_INTERVAL,
        const.CONFIG_MAX_TTL,
        bad,
    )
    key = _tsig(raw.get("tsig"), base, bad)
    if server is None or zone is None or key is None:
        return None
    from .configsections import WideAreaConfig

    return WideAreaConfig(server, zone, key, ttl, interval)


def _tsig(raw: Any, base: Path | None, bad: Any) -> TsigKey | None:
    from .widearea import tsigkey  # only with wide_area: (start-up, docs/performance.md)

    example = (
        "e.g. 'tsig: {name: mdns-gateway., algorithm: hmac-sha256, "
        "secret_file: /etc/mdns-gateway/tsig.key}'"
    )
    if not isinstance(raw, dict):
        bad("wide_area.tsig", "missing or not a mapping", example)
        return None
    _unknown_keys(raw, _TSIG_KEYS, "wide_area.tsig", bad)
    name = None
    raw_name = raw.get("name")
    try:
        if isinstance(raw_name, str) and raw_name:
            name = dns.name.from_text(raw_name)
    except Exception:  # dnspython raises several types for bad names
        name = None
    if name is None:
        bad("wide_area.tsig.name", f"{_short(raw_name)} is not a key name", example)
    algorithm = raw.get("algorithm", "hmac-sha256")
    if not isinstance(algorithm, str) or algorithm.lower() not in tsigkey.ALGORITHMS:
        bad(
            "wide_area.tsig.algorithm",
            f"{_short(algorithm)} is not a TSIG algorithm the gateway signs with",
            f"use one of {', '.join(tsigkey.ALGORITHMS)} (hmac-sha256 is what both "
            "tsig-keygen and keymgr make by default)",
        )
        algorithm = None
    else:
        algorithm = algorithm.lower()
    secret_file = raw.get("secret_file")
    if not isinstance(secret_file, str) or not secret_file.strip():
        bad("wide_area.tsig.secret_file", f"{_short(secret_file)} is not a file path", example)
        return None
    path = Path(secret_file)
    if not path.is_absolute() and base is not None:
        path = base / path
    key = "wide_area.tsig.secret_file"
    make = (
        "write it with 'tsig-keygen -a hmac-sha256 NAME > FILE' (BIND), "
        "'keymgr -t NAME hmac-sha256 > FILE' (Knot) or one line of base64, then "
        "'chmod 600 FILE'"
    )
    try:
        mode = path.stat().st_mode
        if mode & 0o004:
            bad(
                key,
                f"{path} is readable by every user (mode {mode & 0o777:o}): anyone could "
                "publish into the zone with it",
                f"chmod o-rwx {path} (and chown it to the gateway's user)",
            )
            return None
        with path.open("rb") as f:
            data = f.read(const.WIDEAREA_KEY_FILE_MAX_BYTES + 1)
    except OSError as exc:
        bad(key, f"cannot read {path}: {exc.strerror}", f"check the path and permissions; {make}")
        return None
    if len(data) > const.WIDEAREA_KEY_FILE_MAX_BYTES:
        bad(key, f"{path} is larger than a key file", f"check the path; {make}")
        return None
    if name is None or algorithm is None:
        return None
    try:
        return tsigkey.parse(data.decode("utf-8", "replace"), name, algorithm)
    except tsigkey.KeyFileProblem as exc:
        bad(key, f"{path}: {exc}", make + "; tsig.name and tsig.algorithm must match the key's")
        return None
