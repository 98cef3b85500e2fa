"""What `check` and `run` can tell about a valid config before it serves: listeners no client
can use, and listen addresses this machine does not have (run would die binding them).

Config parsing (config.py) knows only the file; these rules also need the host's addresses,
passed in, so they stay pure. Each problem is one line naming the file, the key and the fix.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterator

from .config import Address, Config


def listeners(cfg: Config) -> Iterator[tuple[str, Address]]:
    """(config key, address) of every socket the config asks for."""
    for i, a in enumerate(cfg.dns.listen):
        yield f"dns.listen[{i}]", a
    for view, addrs in cfg.dns.view_listeners.items():
        for i, a in enumerate(addrs):
            yield f"dns.view_listeners.{view}[{i}]", a
    if cfg.http.listen is not None:
        yield "http.listen", cfg.http.listen


def absent_addresses(cfg: Config, present: Collection[str]) -> list[str]:
    """Listen addresses not on any interface of this machine (``present``: its addresses)."""
    return [
        f"{cfg.source}: {key}: {host} is not an address of this machine (port {port}); "
        "fix: use an address of one of its interfaces, or add it first"
        for key, (host, port) in listeners(cfg)
        if host not in present
    ]


def unusable_listeners(cfg: Config) -> list[str]:
    """Plain DNS listeners on loopback without dns.default_view: every query there is
    REFUSED, since a loopback client is in no VLAN subnet. One line per listener."""
    if cfg.dns.default_view is not None:
        return []
    return [
        f"{cfg.source}: {key}: {host}:{port} is on loopback and dns.default_view is not set: "
        "every query there is REFUSED (a loopback client is in no VLAN subnet); fix: set "
        "dns.default_view (e.g. '*': every VLAN) or add a view listener (dns.view_listeners)"
        for key, (host, port) in listeners(cfg)
        if key.startswith("dns.listen") and ipaddress.ip_address(host).is_loopback
    ]


def open_http(cfg: Config) -> list[str]:
    """An HTTP listener off loopback without a bearer token: it serves only /healthz and
    /readyz (every other page answers 403 until http.token_file is set)."""
    listen = cfg.http.listen
    if listen is None or cfg.http.token is not None or ipaddress.ip_address(listen[0]).is_loopback:
        return []
    return [
        f"{cfg.source}: http.listen: {listen[0]}:{listen[1]} is not loopback and "
        "http.token_file is not set: only /healthz and /readyz will be served (403 for the "
        "page, /metrics and /api); fix: set http.token_file to a file holding a token, or "
        "listen on 127.0.0.1"
    ]


def no_usable_listener(cfg: Config) -> bool:
    """True when the config can serve nothing: no view listener, every plain DNS listener on
    loopback without a default view, and neither the reflector nor chrony advertising (a
    config for those alone may leave DNS unused)."""
    plain = cfg.dns.listen
    return (
        bool(plain)
        and not any(cfg.dns.view_listeners.values())
        and len(unusable_listeners(cfg)) == len(plain)
        and not cfg.reflector.enabled
        and cfg.chrony is None
    )
