"""The embedded default's choice of LAN segments (bridge.lan.choose), on described links.

tests/integration/test_lan_lab.py checks the same rules on real interfaces in a namespace.
"""

from __future__ import annotations

from bridge.lan import Choice, Link, choose


def test_a_router_keeps_its_lan_bridges_and_skips_the_rest() -> None:
    links = [
        Link("lo", usable=False),
        Link("eth0", usable=True, default_route=True),
        Link("eth1", usable=True, master="br0"),
        Link("br0", usable=True, devtype="bridge"),
        Link("eth2.20", usable=True, devtype="vlan"),
        Link("wlan0", usable=True, devtype="wlan"),
        Link("docker0", usable=True, devtype="bridge"),
        Link("veth1a2b", usable=True, master="docker0"),
        Link("virbr0", usable=True, devtype="bridge"),
        Link("cni0", usable=True),
        Link("flannel.1", usable=True),
        Link("cali12ab", usable=True),
        Link("vpn0", usable=True, tun=True),
        Link("office", usable=True, devtype="wireguard", arp_type=65534),
        Link("sit1", usable=True, arp_type=776),
        Link("eth3", usable=False),  # down: not a candidate, not mentioned
    ]
    choice = choose(links)
    assert choice.vlans == ("br0", "eth2.20", "wlan0")
    why = dict(choice.skipped)
    assert why["eth0"] == "the default-route interface (the WAN)"
    assert why["eth1"] == "a port of br0 (the bridge is used)"
    for name in ("docker0", "veth1a2b", "virbr0", "cni0", "flannel.1", "cali12ab"):
        assert why[name] == "a container or virtual interface", name
    assert why["vpn0"] == why["office"] == "a tunnel (tun/tap/WireGuard)"
    assert why["sit1"] == "not an Ethernet-like link (type 776)"
    assert "lo" not in why and "eth3" not in why
    assert not choice.wan_kept
    line = choice.describe()
    assert line.startswith("embedded default: VLANs on br0, eth2.20, wlan0; skipped eth0: the ")
    assert "eth1: a port of br0 (the bridge is used)" in line


def test_the_default_route_interface_is_kept_when_it_is_the_only_segment() -> None:
    """A laptop or a one-port box: its only LAN is where the default route goes."""
    choice = choose([Link("eth0", usable=True, default_route=True), Link("docker0", usable=True)])
    assert choice.vlans == ("eth0",) and choice.wan_kept
    assert "eth0 (default-route interface, kept: no other candidate)" in choice.describe()


def test_nothing_usable_says_so() -> None:
    assert choose([Link("lo", usable=False)]) == Choice((), ())
    assert choose([]).describe() == "embedded default: VLANs on none; skipped none"
