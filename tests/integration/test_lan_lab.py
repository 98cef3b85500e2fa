"""The embedded default's interface choice on real interfaces: a router namespace with a WAN
(the default route), a plain LAN, a bridge with a member port, a docker0-like bridge with a
veth, a tap and, where the kernel has them, a dummy LAN and a WireGuard link. The WAN, LAN and
port are veths whose far ends live in a second namespace (the kernels of CI machines and
containers often lack the dummy module). ``mdns-gateway check`` (no --config)
must take the LAN and the bridge only, and log once what it skipped and why."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlab.lab import LabError, lab_available, run

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def router_ns() -> Iterator[str]:
    ok, reason = lab_available()
    if not ok:
        pytest.skip(reason)
    ns, far = f"mg-lan-{os.getpid()}", f"mg-far-{os.getpid()}"
    run(None, "ip", "netns", "add", ns)
    run(None, "ip", "netns", "add", far)
    try:

        def ip(*args: str) -> None:
            run(ns, "ip", *args)

        ip("link", "set", "lo", "up")
        for i, name in enumerate(("wan0", "lan0", "port1")):
            ip("link", "add", name, "type", "veth", "peer", "name", f"far{i}", "netns", far)
            ip("link", "set", name, "up")
            run(far, "ip", "link", "set", f"far{i}", "up")
        ip("addr", "add", "192.0.2.2/24", "dev", "wan0")
        ip("route", "add", "default", "via", "192.0.2.1", "dev", "wan0")
        ip("addr", "add", "10.1.0.1/24", "dev", "lan0")
        for bridge in ("br0", "docker0"):
            ip("link", "add", bridge, "type", "bridge")
            ip("link", "set", bridge, "up")
        ip("link", "set", "port1", "master", "br0")
        ip("addr", "add", "10.2.0.1/24", "dev", "br0")
        ip("link", "add", "veth0a1b", "type", "veth", "peer", "name", "vethc3d4")
        ip("link", "set", "veth0a1b", "master", "docker0", "up")
        ip("link", "set", "vethc3d4", "up")
        ip("tuntap", "add", "vpn0", "mode", "tap")
        ip("link", "set", "vpn0", "up")
        ip("addr", "add", "10.9.0.1/24", "dev", "vpn0")  # no carrier: the address makes it seen
        for kind, name in (("dummy", "lan9"), ("wireguard", "office")):
            try:
                ip("link", "add", name, "type", kind)
                ip("link", "set", name, "multicast", "on", "up")
            except LabError:
                pass  # not in this kernel: the veths stand for LANs, the tap for tunnels
        yield ns
    finally:
        run(None, "ip", "netns", "del", ns, check=False)
        run(None, "ip", "netns", "del", far, check=False)


def _check(ns: str) -> tuple[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = run(ns, sys.executable, "-m", "bridge", "check", "--log-level", "info", env=env)
    return res.stdout, res.stderr


def _present(ns: str, name: str) -> bool:
    return run(ns, "ip", "link", "show", name, check=False).returncode == 0


def test_embedded_default_takes_lan_segments_only(router_ns: str) -> None:
    out, err = _check(router_ns)
    expected = ["lan0", "br0"] + (["lan9"] if _present(router_ns, "lan9") else [])
    m = re.fullmatch(
        r"<embedded default>: OK: (\d+) VLAN\(s\) \((.*)\), 0 policy resource\(s\)\n", out
    )
    assert m is not None, out
    assert sorted(m.group(2).split(", ")) == sorted(expected), out
    lines = [line for line in err.splitlines() if "embedded default:" in line]
    assert len(lines) == 1, err
    line = lines[0]
    assert "wan0: the default-route interface (the WAN)" in line
    assert "port1: a port of br0 (the bridge is used)" in line
    assert "docker0: a container or virtual interface" in line
    assert "veth0a1b: a container or virtual interface" in line
    assert "vethc3d4: a container or virtual interface" in line
    assert "vpn0: a tunnel (tun/tap/WireGuard)" in line
    if _present(router_ns, "office"):
        assert "office: a tunnel (tun/tap/WireGuard)" in line


def test_the_wan_is_kept_when_it_is_the_only_segment(router_ns: str) -> None:
    for name in ("lan0", "br0", "lan9"):
        run(router_ns, "ip", "link", "set", name, "down", check=False)
    out, err = _check(router_ns)
    assert out.startswith("<embedded default>: OK: 1 VLAN(s) (wan0),"), out
    assert "VLANs on wan0 (default-route interface, kept: no other candidate)" in err
