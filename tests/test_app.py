"""The composition root's life cycle: start binds everything, and a failure at any point of
start unwinds what was started (real sockets on loopback; the mDNS sockets are real too)."""

from __future__ import annotations

import ast
import asyncio
import errno
import os
import socket

import pytest

from bridge.app import Gateway
from bridge.config import Config, from_dict
from tests.support.fresh import fresh_python


def _port(kind: int) -> socket.socket:
    """A socket bound to a free loopback port, without SO_REUSEADDR: a second bind fails."""
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        s.listen()
    return s


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        return int(u.getsockname()[1])


def _config(dns_port: int, http_port: int | None = None) -> Config:
    # a VLAN on an interface that does not exist: no multicast group is joined
    data: dict[str, object] = {
        "vlans": {"a": {"interface": "nosuch0"}},
        "dns": {"listen": [f"127.0.0.1:{dns_port}"]},
    }
    if http_port is not None:
        data["http"] = {"listen": f"127.0.0.1:{http_port}"}
    return from_dict(data, "test")


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _bindable(port: int) -> bool:
    """Nothing holds ``port`` on 127.0.0.1 any more (UDP and TCP, no SO_REUSEADDR)."""
    try:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


async def _failed_start(gw: Gateway) -> OSError:
    with pytest.raises(OSError) as info:
        await gw.start()
    return info.value


def test_a_dns_bind_error_after_the_mdns_sockets_are_up_unwinds_them() -> None:
    async def main() -> None:
        blocker = _port(socket.SOCK_DGRAM)
        gw = Gateway(_config(blocker.getsockname()[1]))
        before = _open_fds()
        exc = await _failed_start(gw)
        assert exc.errno == errno.EADDRINUSE
        assert gw.transport.socks == {}  # the mDNS sockets were opened, then closed
        assert _open_fds() == before
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert not gw.ready.is_set()
        blocker.close()

    asyncio.run(main())


def test_an_http_bind_error_after_dns_is_up_unwinds_dns_and_mdns() -> None:
    async def main() -> None:
        blocker = _port(socket.SOCK_STREAM)
        dns_port = _free_port()
        gw = Gateway(_config(dns_port, blocker.getsockname()[1]))
        before = _open_fds()
        exc = await _failed_start(gw)
        assert exc.errno == errno.EADDRINUSE
        assert gw.transport.socks == {}
        assert _bindable(dns_port)  # the DNS listeners (UDP and TCP) are closed
        assert _open_fds() == before
        assert asyncio.all_tasks() == {asyncio.current_task()}
        blocker.close()

    asyncio.run(main())


def test_start_and_stop_leave_nothing_behind() -> None:
    async def main() -> None:
        dns_port, http_port = _free_port(), _free_port()
        gw = Gateway(_config(dns_port, http_port))
        before = _open_fds()
        await gw.start()
        assert gw.ready.is_set()
        assert not _bindable(dns_port)
        assert gw.http is not None and gw.http.port == http_port and not _bindable(http_port)
        assert {t.get_name() for t in asyncio.all_tasks()} >= {
            "periodic sweep",
            "periodic memory",
            "periodic browse",
            "periodic link scan",
        }
        await gw.stop()
        assert gw.transport.socks == {}
        assert _bindable(dns_port) and _bindable(http_port)
        assert _open_fds() == before
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(main())


def test_no_component_receives_the_gateway() -> None:
    """Every component is built with its collaborators: none holds a reference to the Gateway."""
    gw = Gateway(
        from_dict(
            {
                "vlans": {"a": {"interface": "lo"}},
                "http": {"listen": "127.0.0.1:9"},
                "reflector": {"enabled": True},
                "chrony": {"servers": [{"name": "r", "control": "127.0.0.1"}]},
            },
            "test",
        )
    )
    # the HTTP surface is built by start, after DNS answers (its aiohttp import is half the
    # start-up); built here the same way, without binding
    assert gw.http is None
    gw.build_http()
    components = [v for k, v in vars(gw).items() if not k.startswith("_") and k != "config"]
    components.append(gw.registry)
    assert gw.chrony is not None and gw.reflector is not None and gw.http is not None
    for component in components:
        held = getattr(component, "__dict__", {})
        slots = getattr(type(component), "__slots__", ())
        values = list(held.values()) + [getattr(component, s, None) for s in slots]
        assert not any(v is gw for v in values), component


def test_optional_components_are_imported_only_when_configured() -> None:
    """chrony, the reflector and the Kubernetes policy source stay unimported (start-up cost)
    unless the config has them; the HTTP surface (aiohttp's server), the metrics registry
    (prometheus_client) and the Kubernetes source's client (aiohttp) are imported by start,
    after DNS answers."""

    def optional_modules_loaded(extra: str) -> set[str]:
        code = (
            "import sys; from bridge.app import Gateway; from bridge.config import from_dict; "
            f"Gateway(from_dict({{'vlans': {{'a': {{'interface': 'nosuch0'}}}}{extra}}}, 't')); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', "
            "'prometheus_client') or m.startswith(('bridge.chrony', 'bridge.reflector', "
            "'bridge.policy.kube', 'bridge.web', 'bridge.metrics'))))"
        )
        return set(ast.literal_eval(fresh_python(code)))

    assert optional_modules_loaded(", 'http': {'listen': None}") == set()
    # the HTTP surface is on by default: built and imported at start, after DNS
    assert optional_modules_loaded("") == set()
    every = (
        ", 'reflector': {'enabled': True},"
        " 'chrony': {'servers': [{'name': 'r', 'control': '127.0.0.1'}]},"
        " 'policies': {'kubernetes': {'namespace': 'gw', 'nodeName': 'router'}}"
    )
    loaded = optional_modules_loaded(every)
    assert {"bridge.chrony", "bridge.reflector", "bridge.policy.kubesource"} <= loaded
    # aiohttp's client: imported by the source's list/watch task in a worker thread, once DNS
    # answers (kubesource._import_aiohttp), not while the Gateway is built
    assert not {m for m in loaded if m.split(".")[0] == "aiohttp"}, loaded


def test_what_only_problems_and_options_use_is_not_imported_before_dns() -> None:
    """Start-up (docs/performance.md): building the Gateway from a config without wide_area
    imports neither the TSIG key reader nor difflib (only a config or policy problem's
    "did you mean" uses it), nor ifaddr's ctypes.util and platform, nor importlib.metadata's
    email and zipfile (bridge/dnsfeatures.py), nor what only an explain request (the policy
    explainer), the embedded default (bridge.lan), the first heap trim (ctypes) or an optional
    config section (bridge.configsections: chrony, kubernetes, wide_area, dhcp) use, nor the
    diagnostics that only the HTTP surface and /metrics read (built by their first reader)."""
    code = (
        "import sys; import bridge.cli; from bridge.app import Gateway; "
        "import bridge.dnsfront.server; from bridge.config import from_dict; "
        "Gateway(from_dict({'vlans': {'a': {'interface': 'nosuch0'}}}, 't')); "
        "print(sorted(m for m in ('difflib', 'bridge.widearea.tsigkey', 'ifaddr', 'ctypes.util',"
        " 'platform', 'email', 'zipfile', 'bridge.policy.explain', 'bridge.lan', 'ctypes',"
        " 'bridge.configsections', 'bridge.diagnostics')"
        " if m in sys.modules))"
    )
    assert ast.literal_eval(fresh_python(code)) == []
