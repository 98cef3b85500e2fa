"""CoreDNS server blocks that forward the gateway's zones to it, written from its Config.

``mdns-gateway corefile --config FILE`` prints them, so the Corefile cannot drift from the
gateway's VLANs, domains, subnets and ports. CoreDNS does not pass the client's address on,
so each VLAN's clients must reach the gateway's fixed-view port for that VLAN
(``dns.view_listeners``), in one of two shapes:

- ``bind`` (default): one server block per VLAN, listening on the router's addresses on that
  VLAN, forwarding to the VLAN's view port; then a catch-all ``.`` block on the same
  addresses for every other name (CoreDNS's bind README: when one block on a port binds, all
  must, or two listeners contend for the same packets).
- ``view``: one server block per VLAN on every address, chosen by the client's subnet
  (``view`` plugin, ``incidr(client_ip(), ...)``); a last block of the same zones refuses
  clients of no VLAN, so ``.local`` never reaches the upstream resolver.

Each block serves ``local.``, the browse domain, every VLAN domain and every VLAN subnet's
reverse zone (the zones the gateway answers, from the same rule: ``resolver.reverse_zone``),
all VLANs' in every block since a policy may let one VLAN see another's services. The cache
keeps the gateway's own TTLs (its ``max_ttl`` and ``negative_ttl`` as caps, minimum 0 instead
of CoreDNS's 5 s, which would hold an mDNS answer past its ten seconds).

Syntax checked against CoreDNS 1.14.7 (plugin/bind, plugin/cache, plugin/forward,
plugin/view, plugin/template READMEs and core/dnsserver/register.go at that release).

Pure: :func:`render` takes the Config and the router's interface addresses; it returns text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dns.name

from . import const
from .config import Address, Config, ConfigError, IPNetwork
from .dnsfront.resolver import reverse_zone
from .dnssd import LOCAL
from .interfaces import IPInterface, own_prefixes

STYLES = ("bind", "view")
_REVERSE = (dns.name.from_text("in-addr.arpa."), dns.name.from_text("ip6.arpa."))
INDENT = "    "


@dataclass(frozen=True, slots=True)
class VlanBlock:
    """What one VLAN's server block needs: where its clients ask, where the gateway answers."""

    vlan: str
    interface: str
    addresses: tuple[str, ...]  # the router's own addresses on the VLAN (bind)
    subnets: tuple[IPNetwork, ...]  # its clients' subnets (view, reverse zones)
    upstreams: tuple[Address, ...]  # the gateway's fixed-view listeners for this VLAN


def _bindable(addr: IPInterface) -> bool:
    """A DNS server address for the VLAN's clients: not loopback (not on the VLAN), not link-
    local (fe80:: needs a zone index; 169.254/16 is no address DHCP hands out as the DNS)."""
    return not (addr.ip.is_loopback or addr.ip.is_link_local)


def plan(
    cfg: Config, interfaces: Mapping[str, Sequence[IPInterface]], style: str = "bind"
) -> list[VlanBlock]:
    """One block per VLAN, or ConfigError naming every VLAN that cannot have one (for a
    Corefile, a VLAN without a view port or a known address is a configuration error)."""
    problems: list[str] = []
    blocks: list[VlanBlock] = []
    for vlan in cfg.vlans.values():
        addrs = interfaces.get(vlan.interface, ())
        own = tuple(dict.fromkeys(str(a.ip) for a in addrs if _bindable(a)))
        subnets = vlan.subnets or own_prefixes(addrs)
        upstreams = cfg.dns.view_listeners.get(vlan.name, ())
        if not upstreams:
            problems.append(
                f"{cfg.source}: dns.view_listeners.{vlan.name}: missing; CoreDNS does not pass "
                "the client's address on, so each VLAN needs a port of its own; fix: add e.g. "
                f"'{vlan.name}: [\"127.0.0.1:{const.DNS_DEFAULT_PORT + 10 * (len(blocks) + 1)}\"]'"
            )
        if style == "bind" and not own:
            problems.append(
                f"{cfg.source}: vlans.{vlan.name}.interface: {vlan.interface} has no address "
                "here for CoreDNS to bind; fix: run this on the router, or give its addresses "
                f"with --address {vlan.interface}=ADDRESS/PREFIX"
            )
        if not subnets:
            problems.append(
                f"{cfg.source}: vlans.{vlan.name}.subnets: unknown ({vlan.interface} has no "
                "address here); fix: set the VLAN's subnets, or give the interface's addresses "
                f"with --address {vlan.interface}=ADDRESS/PREFIX"
            )
        blocks.append(VlanBlock(vlan.name, vlan.interface, own, subnets, upstreams))
    if problems:
        raise ConfigError(problems)
    return blocks


def zones(cfg: Config, blocks: Sequence[VlanBlock]) -> list[dns.name.Name]:
    """Every zone the gateway answers: local., the browse domain, the VLAN domains, and each
    VLAN subnet's reverse zone."""
    names = [LOCAL, cfg.dns.browse_domain, *(v.domain for v in cfg.vlans.values())]
    names += [reverse_zone(net) for b in blocks for net in b.subnets]
    return list(dict.fromkeys(names))


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _keys(names: Sequence[dns.name.Name]) -> list[str]:
    """Server block keys: the forward zones on one line, then a reverse zone a line (a key
    ending in a comma continues on the next line: coredns/caddy caddyfile/parse.go)."""
    keys = [f"{n.to_text(omit_final_dot=True)}:{const.COREDNS_PORT}" for n in names]
    is_reverse = [any(n.is_subdomain(r) for r in _REVERSE) for n in names]
    forward = [k for k, rev in zip(keys, is_reverse, strict=True) if not rev]
    reverse = [k for k, rev in zip(keys, is_reverse, strict=True) if rev]
    lines = [", ".join(forward), *reverse] if forward else reverse
    return [line + "," for line in lines[:-1]] + lines[-1:]


def _gateway_plugins(cfg: Config, block: VlanBlock) -> list[str]:
    """cache and forward: the same in both shapes."""
    upstreams = " ".join(f"{_host(h)}:{p}" for h, p in block.upstreams)
    return [
        f"cache {cfg.dns.max_ttl} {{",
        f"{INDENT}success {const.COREFILE_CACHE_SUCCESS} {cfg.dns.max_ttl} 0",
        f"{INDENT}denial {const.COREFILE_CACHE_DENIAL} {cfg.dns.negative_ttl} 0",
        "}",
        # the gateway answers CoreDNS's health check (. NS) REFUSED, which counts as healthy;
        # 0 skips the checks, and a single upstream is never marked down
        f"forward . {upstreams} {{",
        f"{INDENT}max_fails 0",
        "}",
    ]


def _server(keys: Sequence[str], comments: Sequence[str], plugins: Sequence[str]) -> list[str]:
    return [
        *(f"# {c}" for c in comments),
        *keys[:-1],
        f"{keys[-1]} {{",
        *(f"{INDENT}{p}" for p in plugins),
        "}",
        "",
    ]


def _describe(block: VlanBlock, style: str) -> list[str]:
    nets = ", ".join(str(n) for n in block.subnets)
    views = ", ".join(f"{_host(h)}:{p}" for h, p in block.upstreams)
    asks = f"ask {', '.join(block.addresses)}" if style == "bind" else f"are in {nets}"
    return [
        f"VLAN {block.vlan} (interface {block.interface}, {nets}): its clients {asks};",
        f"the gateway answers them as the {block.vlan} view on {views}",
    ]


def render(
    cfg: Config, interfaces: Mapping[str, Sequence[IPInterface]], style: str = "bind"
) -> str:
    """The Corefile text; ``interfaces`` maps each interface name to its addresses with
    their prefixes (the router's, not necessarily this machine's)."""
    if style not in STYLES:
        raise ValueError(f"style {style!r}: use one of {', '.join(STYLES)}")
    blocks = plan(cfg, interfaces, style)
    keys = _keys(zones(cfg, blocks))
    out = [
        f"# CoreDNS server blocks for mdns-gateway, written by `mdns-gateway corefile"
        f"{' --style view' if style == 'view' else ''}` from {cfg.source}:",
        "# regenerate rather than edit (its VLANs, zones, subnets and ports come from there).",
        "# Checked against CoreDNS 1.14.7. See docs/deployment.md.",
        "",
    ]
    if style == "bind":
        for b in blocks:
            plugins = [f"bind {' '.join(b.addresses)}", *_gateway_plugins(cfg, b)]
            out += _server(keys, _describe(b, style), plugins)
        everyone = " ".join(a for b in blocks for a in b.addresses)
        out += _server(
            [f".:{const.COREDNS_PORT}"],
            [
                "Every other name: the usual resolver, on the same addresses (when one block",
                "on a port uses bind, every block on it must).",
            ],
            [f"bind {everyone}", "cache 300", "forward . /etc/resolv.conf"],
        )
    else:
        for b in blocks:
            expr = " || ".join(f"incidr(client_ip(), '{n}')" for n in b.subnets)
            plugins = [f"view {b.vlan} {{", f"{INDENT}expr {expr}", "}"]
            out += _server(keys, _describe(b, style), plugins + _gateway_plugins(cfg, b))
        out += _server(
            keys,
            [
                "Clients in no VLAN subnet: refused (blocks of one zone are tried top to",
                "bottom, so this one must come last), never passed to the upstream resolver.",
            ],
            ["template ANY ANY {", f"{INDENT}rcode REFUSED", "}"],
        )
    return "\n".join(out).rstrip("\n") + "\n"


def parse_address(text: str) -> tuple[str, IPInterface]:
    """``IFACE=ADDRESS/PREFIX`` (the --address option) -> (interface, address)."""
    name, sep, value = text.partition("=")
    if sep and name and "/" in value:
        try:
            return name, ipaddress.ip_interface(value)
        except ValueError:
            pass  # not an address: the error below says what the option takes
    raise ValueError(f"{text!r}: expected IFACE=ADDRESS/PREFIX, e.g. br10=10.10.0.1/24")
