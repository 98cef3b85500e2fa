"""What iproute2 says the interfaces and addresses are: the reference bridge/interfaces.py's
rtnetlink reader is compared with (``ip -j address show``)."""

from __future__ import annotations

import json
import subprocess


def ip_addresses(ns: str | None = None) -> dict[str, tuple[int, list[str]]]:
    """{name: (index, ["addr/prefix", ...])} of every interface with an address, as ``ip``
    reads them (an IPv4 address's label names its interface, as getifaddrs does)."""
    cmd = ["ip", "-j", "address", "show"]
    if ns is not None:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    links = json.loads(subprocess.run(cmd, capture_output=True, check=True, text=True).stdout)
    out: dict[str, tuple[int, list[str]]] = {}
    for link in links:
        for a in link.get("addr_info", []):
            if a.get("family") not in ("inet", "inet6"):
                continue
            name = a.get("label", link["ifname"]) if a["family"] == "inet" else link["ifname"]
            out.setdefault(name, (link["ifindex"], []))[1].append(f"{a['local']}/{a['prefixlen']}")
    return out
