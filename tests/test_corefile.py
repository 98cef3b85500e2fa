"""mdns-gateway corefile: the CoreDNS server blocks match the config, the shipped examples are
what it writes, and CoreDNS's forward (netlab's emulation) reaches the right view through them.

The Corefile is read back with a reader of the Caddyfile grammar CoreDNS uses (coredns/caddy
caddyfile/lexer.go and parse.go): tokens split on white space, ``#`` to the end of a line is
a comment, ``{`` and ``}`` open and close blocks, a server block's keys end at the line that
does not end in a comma; a directive is its line, with its nested block if one opens there.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import pytest

from bridge import cli, config, corefile
from bridge.app import Gateway
from bridge.dnsfront.resolver import Zones
from bridge.interfaces import IPInterface, own_prefixes
from netlab.coredns_forward import CacheConfig, ForwardClient, cache_ttl

ROOT = Path(__file__).resolve().parents[1]
ROUTER = "examples/router.yaml"  # relative: the shipped files name their source as given
# the example router's addresses (examples/router.yaml's header and docs/deployment.md)
ROUTER_ADDRESSES = [
    "br10=10.10.0.1/24",
    "br10=fd00:10::1/64",
    "br10=fe80::1/64",
    "br20=10.20.0.1/24",
    "br20=fd00:20::1/64",
    "br30=10.30.0.1/24",
    "br30=fd00:30::1/64",
]
SHIPPED = {"bind": ROOT / "corefile" / "Corefile", "view": ROOT / "corefile" / "Corefile.view"}


# --- a reader for the Corefile grammar -------------------------------------------------------


@dataclass
class Directive:
    name: str
    args: list[str]
    body: list[Directive] = field(default_factory=list)

    def one(self, name: str) -> Directive:
        found = [d for d in self.body if d.name == name]
        assert len(found) == 1, (name, self.body)
        return found[0]


@dataclass
class ServerBlock:
    keys: list[str]
    body: list[Directive]

    def one(self, name: str) -> Directive:
        return Directive("", [], self.body).one(name)

    def zones(self) -> set[dns.name.Name]:
        out = set()
        for key in self.keys:
            zone, port = key.rsplit(":", 1)
            assert port == "53", key
            out.add(dns.name.from_text(zone))
        return out


def _lines(text: str) -> Iterator[list[str]]:
    for line in text.splitlines():
        tokens = line.split("#", 1)[0].split()
        if tokens:
            yield tokens


def _directives(lines: list[list[str]], i: int) -> tuple[list[Directive], int]:
    """Directives up to the line holding only the closing brace; returns the next line."""
    out: list[Directive] = []
    while lines[i] != ["}"]:
        tokens = lines[i]
        assert "}" not in tokens and tokens.count("{") <= 1, tokens
        if tokens[-1] == "{":
            body, i = _directives(lines, i + 1)
            out.append(Directive(tokens[0], tokens[1:-1], body))
        else:
            out.append(Directive(tokens[0], tokens[1:]))
        i += 1
    return out, i


def parse(text: str) -> list[ServerBlock]:
    lines = list(_lines(text))
    blocks: list[ServerBlock] = []
    i = 0
    while i < len(lines):
        keys: list[str] = []
        while True:
            tokens = lines[i]
            opens = tokens[-1] == "{"
            for t in tokens[:-1] if opens else tokens:
                keys.append(t.rstrip(","))
            i += 1
            if opens:
                break
            assert tokens[-1].endswith(","), f"keys end without a comma or a brace: {tokens}"
        body, i = _directives(lines, i)
        blocks.append(ServerBlock(keys, body))
        i += 1
    return blocks


# --- helpers ---------------------------------------------------------------------------------


def _interfaces(specs: list[str]) -> dict[str, list[IPInterface]]:
    out: dict[str, list[IPInterface]] = {}
    for spec in specs:
        name, addr = corefile.parse_address(spec)
        out.setdefault(name, []).append(addr)
    return out


def _router(monkeypatch: pytest.MonkeyPatch) -> config.Config:
    monkeypatch.chdir(ROOT)
    return config.load(ROUTER)


def _served_zones(cfg: config.Config, interfaces: dict[str, list[IPInterface]]) -> set[str]:
    """The apexes the gateway itself serves, built the way app.py builds its Zones."""
    subnets = {
        name: v.subnets or own_prefixes(interfaces.get(v.interface, ()))
        for name, v in cfg.vlans.items()
    }
    domains = {name: v.domain for name, v in cfg.vlans.items()}
    return {str(z) for z in Zones(domains, cfg.dns.browse_domain, subnets).apexes}


# --- the shipped examples --------------------------------------------------------------------


@pytest.mark.parametrize("style", sorted(SHIPPED))
def test_shipped_corefiles_are_what_the_command_writes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], style: str
) -> None:
    monkeypatch.chdir(ROOT)
    argv = ["corefile", "--config", ROUTER, "--style", style]
    for spec in ROUTER_ADDRESSES:
        argv += ["--address", spec]
    assert cli.main(argv) == cli.EXIT_OK
    written = capsys.readouterr().out
    path = SHIPPED[style]
    assert path.read_text() == written, (
        f"{path.relative_to(ROOT)} is stale; regenerate it: "
        f"python -m bridge {' '.join(argv)} > {path.relative_to(ROOT)}"
    )


# --- what the blocks say ---------------------------------------------------------------------


def test_bind_blocks_forward_each_vlan_to_its_view_port(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _router(monkeypatch)
    interfaces = _interfaces(ROUTER_ADDRESSES)
    blocks = parse(corefile.render(cfg, interfaces))
    assert len(blocks) == len(cfg.vlans) + 1
    served = _served_zones(cfg, interfaces)
    for block, vlan in zip(blocks, cfg.vlans.values(), strict=False):
        assert {str(z) for z in block.zones()} == served
        own = [str(a.ip) for a in interfaces[vlan.interface] if not a.ip.is_link_local]
        assert block.one("bind").args == own  # fe80:: is not bindable without a zone
        forward = block.one("forward")
        assert forward.args[0] == "."
        assert forward.args[1:] == [f"{h}:{p}" for h, p in cfg.dns.view_listeners[vlan.name]]
        assert forward.one("max_fails").args == ["0"]
        cache = block.one("cache")
        assert cache.args == [str(cfg.dns.max_ttl)]
        # CoreDNS's minimum TTL lowered to 0: an mDNS answer is never held past its TTL
        assert cache.one("success").args[1:] == [str(cfg.dns.max_ttl), "0"]
        assert cache.one("denial").args[1:] == [str(cfg.dns.negative_ttl), "0"]
    rest = blocks[-1]
    assert rest.keys == [".:53"]
    assert rest.one("bind").args == [a for b in blocks[:-1] for a in b.one("bind").args]
    assert rest.one("forward").args == [".", "/etc/resolv.conf"]


def test_view_blocks_choose_by_client_subnet_and_refuse_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = _router(monkeypatch)
    blocks = parse(corefile.render(cfg, _interfaces(ROUTER_ADDRESSES), "view"))
    assert len(blocks) == len(cfg.vlans) + 1
    assert len({tuple(b.keys) for b in blocks}) == 1  # one zone set, tried top to bottom
    for block, name in zip(blocks, cfg.vlans, strict=False):
        view = block.one("view")
        assert view.args == [name]
        assert " ".join(view.one("expr").args) == (
            f"incidr(client_ip(), '10.{name_octet(name)}.0.0/24') || "
            f"incidr(client_ip(), 'fd00:{name_octet(name)}::/64')"
        )
        assert block.one("forward").args[1:] == [
            f"{h}:{p}" for h, p in cfg.dns.view_listeners[name]
        ]
        assert not [d for d in block.body if d.name == "bind"]
    last = blocks[-1]
    assert [d.name for d in last.body] == ["template"]
    assert last.one("template").args == ["ANY", "ANY"]
    assert last.one("template").one("rcode").args == ["REFUSED"]


def name_octet(vlan: str) -> int:
    return {"trusted": 10, "iot": 20, "guest": 30}[vlan]


def test_configured_subnets_make_the_reverse_zones_and_ipv6_upstreams_are_bracketed() -> None:
    cfg = config.from_dict(
        {
            "vlans": {"lab": {"interface": "br7", "subnets": ["10.7.0.0/16", "fd00:7::/48"]}},
            "dns": {"listen": ["127.0.0.1:5300"], "view_listeners": {"lab": ["[::1]:5317"]}},
        },
        "lab.yaml",
    )
    text = corefile.render(cfg, _interfaces(["br7=10.7.1.1/24", "br7=169.254.7.1/16"]))
    block = parse(text)[0]
    assert block.zones() >= {
        dns.name.from_text("7.10.in-addr.arpa."),
        dns.name.from_text("0.0.0.0.7.0.0.0.0.0.d.f.ip6.arpa."),  # fd00:0007:0000::/48
    }
    assert dns.name.from_text("1.7.10.in-addr.arpa.") not in block.zones()
    assert block.one("forward").args == [".", "[::1]:5317"]
    assert block.one("bind").args == ["10.7.1.1"]


def test_a_vlan_without_a_view_port_or_an_address_is_refused_naming_the_key_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(
        "vlans:\n  a: {interface: nosuch0}\n  b: {interface: nosuch1}\n"
        "dns:\n  listen: ['127.0.0.1:5300']\n  view_listeners: {a: ['127.0.0.1:5310']}\n"
    )
    argv = ["corefile", "--config", str(path), "--address", "nosuch0=10.1.0.1/24"]
    assert cli.main(argv) == cli.EXIT_INVALID
    err = capsys.readouterr().err
    assert f"{path}: dns.view_listeners.b: missing" in err
    assert f"{path}: vlans.b.interface: nosuch1 has no address here" in err
    assert "--address nosuch1=ADDRESS/PREFIX" in err
    assert "vlans.a" not in err and "view_listeners.a" not in err
    # the view shape needs no router address, only the subnets
    path.write_text(
        "vlans:\n  a: {interface: nosuch0, subnets: [10.1.0.0/24]}\n"
        "dns:\n  listen: ['127.0.0.1:5300']\n  view_listeners: {a: ['127.0.0.1:5310']}\n"
    )
    assert cli.main(["corefile", "--config", str(path), "--style", "view"]) == cli.EXIT_OK
    assert "incidr(client_ip(), '10.1.0.0/24')" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["br10", "br10=10.10.0.1", "=10.1.0.1/24", "br10=10.10.0.300/24"])
def test_a_bad_address_option_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    monkeypatch.chdir(ROOT)
    assert cli.main(["corefile", "--config", ROUTER, "--address", bad]) == cli.EXIT_USAGE
    assert "expected IFACE=ADDRESS/PREFIX" in capsys.readouterr().err


# --- through CoreDNS's forward, to the real gateway -------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        return int(u.getsockname()[1])


@pytest.fixture
def gateway() -> Iterator[config.Config]:
    """The real gateway on loopback: three VLANs (on interfaces that do not exist here, so
    no multicast group is joined), a view port each."""
    ports = {name: _free_port() for name in ("trusted", "iot", "guest")}
    cfg = config.from_dict(
        {
            "vlans": {name: {"interface": f"nosuch{i}"} for i, name in enumerate(ports)},
            "dns": {
                "listen": [f"127.0.0.1:{_free_port()}"],
                "view_listeners": {name: [f"127.0.0.1:{p}"] for name, p in ports.items()},
            },
            "http": {"listen": None},
        },
        "gw.yaml",
    )
    loop = asyncio.new_event_loop()
    gw = Gateway(cfg)
    loop.run_until_complete(gw.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield cfg
    finally:
        asyncio.run_coroutine_threadsafe(gw.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def test_each_block_reaches_its_vlans_view_through_coredns_forward(
    gateway: config.Config,
) -> None:
    cfg = gateway
    interfaces = {
        f"nosuch{i}": [ipaddress.ip_interface(f"10.{i + 1}.0.1/24")] for i in range(len(cfg.vlans))
    }
    blocks = parse(corefile.render(cfg, interfaces))[: len(cfg.vlans)]
    for block, vlan in zip(blocks, cfg.vlans.values(), strict=True):
        host, port = block.one("forward").args[1].rsplit(":", 1)
        success = block.one("cache").one("success").args
        denial = block.one("cache").one("denial").args
        cache = CacheConfig(
            success_max=int(success[1]),
            success_min=int(success[2]),
            denial_max=int(denial[1]),
            denial_min=int(denial[2]),
        )
        with ForwardClient(host, int(port)) as fwd:
            assert fwd.health_check()
            # the browse domains a view lists are the VLANs it may see: by default its own
            q = dns.message.make_query(f"b._dns-sd._udp.{cfg.dns.browse_domain}", "PTR")
            reply = fwd.exchange(q)
            assert reply.rcode() == dns.rcode.NOERROR
            pointed = {str(rd.target) for rrset in reply.answer for rd in rrset}
            assert pointed == {str(vlan.domain)}, (vlan.name, reply)
            ttl = cache_ttl(reply, cache)
            assert ttl is not None and ttl <= cfg.dns.max_ttl
            # a name no device announced: NXDOMAIN, cached no longer than the negative TTL
            q = dns.message.make_query(f"nobody-here.{vlan.domain}", "A")
            reply = fwd.exchange(q)
            assert reply.rcode() == dns.rcode.NXDOMAIN
            ttl = cache_ttl(reply, cache)
            assert ttl is not None and ttl <= cfg.dns.negative_ttl
