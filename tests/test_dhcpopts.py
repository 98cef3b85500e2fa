"""dhcp-options: NTP servers (v4 42, v6 56) and domain search (v4 119, v6 24) per VLAN."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bridge import cli, config, dhcpopts

IFACES = {
    "br10": [
        ipaddress.ip_interface("10.10.0.1/24"),
        ipaddress.ip_interface("fd00:10::1/64"),
        ipaddress.ip_interface("fe80::1/64"),
    ],
    "br20": [ipaddress.ip_interface("10.20.0.1/24")],
}


def _cfg(chrony: bool = True) -> config.Config:
    data: dict[str, object] = {
        "vlans": {
            "trusted": {"interface": "br10", "domain": "trusted.home.arpa."},
            "iot": {"interface": "br20"},
            "guest": {"interface": "br30"},
        }
    }
    if chrony:
        data["chrony"] = {
            "servers": [
                {
                    "name": "router2",
                    "control": "10.10.0.254",
                    "priority": 5,
                    "addresses": {"trusted": ["10.10.0.254", "fd00:10::fe"]},
                },
                {"name": "router", "control": "127.0.0.1:323", "priority": 0},
            ],
            "vlans": ["trusted", "iot"],
        }
    return config.from_dict(data, "gw.yaml")


def test_plan_orders_by_preference_and_skips_link_local() -> None:
    by = {o.vlan: o for o in dhcpopts.plan(_cfg(), IFACES)}
    assert by["trusted"].ntp4 == ("10.10.0.1", "10.10.0.254")
    assert by["trusted"].ntp6 == ("fd00:10::1", "fd00:10::fe")
    assert by["trusted"].domain == "trusted.home.arpa"
    assert by["trusted"].subnets4 == ("10.10.0.0/24",)
    assert by["iot"].ntp4 == ("10.20.0.1",) and by["iot"].ntp6 == ()
    assert by["guest"].ntp4 == () and by["guest"].missing_interface  # not advertised there
    assert by["guest"].domain == "guest.home.arpa"


def test_dnsmasq_lines() -> None:
    text = dhcpopts.render(dhcpopts.plan(_cfg(), IFACES), "dnsmasq", "gw.yaml")
    assert "dhcp-option=tag:br10,option:ntp-server,10.10.0.1,10.10.0.254" in text
    assert "dhcp-option=tag:br10,option:domain-search,trusted.home.arpa" in text
    assert "dhcp-option=tag:br10,option6:ntp-server,[fd00:10::1],[fd00:10::fe]" in text
    assert "dhcp-option=tag:br10,option6:domain-search,trusted.home.arpa" in text
    assert "dhcp-option=tag:br20,option:ntp-server,10.20.0.1" in text
    assert "option6:ntp-server" not in text.split("# VLAN iot")[1]


def test_kea_json() -> None:
    doc = json.loads(dhcpopts.render(dhcpopts.plan(_cfg(), IFACES), "kea", "gw.yaml"))
    s4 = {s["subnet"]: s for s in doc["Dhcp4"]["subnet4"]}
    opts = {o["code"]: o for o in s4["10.10.0.0/24"]["option-data"]}
    assert opts[42]["data"] == "10.10.0.1, 10.10.0.254"
    assert opts[119]["data"] == "trusted.home.arpa"
    s6 = {s["subnet"]: s for s in doc["Dhcp6"]["subnet6"]}
    opts6 = {o["code"]: o for o in s6["fd00:10::/64"]["option-data"]}
    assert opts6[24]["data"] == "trusted.home.arpa"
    raw = bytes.fromhex(opts6[56]["data"])
    # RFC 5908: sub-option 1 (server address), length 16, the address; once per server
    assert raw[:4] == b"\x00\x01\x00\x10"
    assert ipaddress.IPv6Address(raw[4:20]) == ipaddress.IPv6Address("fd00:10::1")
    assert ipaddress.IPv6Address(raw[24:40]) == ipaddress.IPv6Address("fd00:10::fe")
    assert s4["10.10.0.0/24"]["interface"] == "br10"


def test_without_chrony_only_domain_search() -> None:
    text = dhcpopts.render(dhcpopts.plan(_cfg(False), IFACES), "dnsmasq", "gw.yaml")
    assert "ntp-server" not in text and "option:domain-search,iot.home.arpa" in text


@pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="dnsmasq not installed")
def test_dnsmasq_accepts_the_output(tmp_path: Path) -> None:
    conf = tmp_path / "dnsmasq.conf"
    conf.write_text(dhcpopts.render(dhcpopts.plan(_cfg(), IFACES), "dnsmasq", "gw.yaml"))
    res = subprocess.run(
        ["dnsmasq", "--test", "-C", str(conf)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("family", ["4", "6"])
def test_kea_accepts_the_output(tmp_path: Path, family: str) -> None:
    binary = shutil.which(f"kea-dhcp{family}")
    if binary is None:
        pytest.skip(f"kea-dhcp{family} not installed")
    doc = json.loads(dhcpopts.render(dhcpopts.plan(_cfg(), IFACES), "kea", "gw.yaml"))
    key, subnets = ("Dhcp4", "subnet4") if family == "4" else ("Dhcp6", "subnet6")
    entries = []
    for i, s in enumerate(doc[key][subnets], 1):
        s = dict(s, id=i)
        s.pop("interface")  # the lab interfaces do not exist where this test runs
        entries.append(s)
    conf = tmp_path / "kea.json"
    conf.write_text(json.dumps({key: {subnets: entries}}))
    res = subprocess.run(
        [binary, "-t", str(conf)], capture_output=True, text=True, timeout=20, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(
        "vlans:\n  trusted: {interface: nosuchif0}\nchrony:\n  servers:\n"
        "    - {name: router2, control: 10.10.0.254,"
        " addresses: {trusted: 10.10.0.254}}\n"
    )
    assert cli.main(["dhcp-options", "--config", str(path)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "dhcp-option=tag:nosuchif0,option:ntp-server,10.10.0.254" in out
    assert cli.main(["dhcp-options", "--config", str(path), "--format", "kea"]) == cli.EXIT_OK
    json.loads(capsys.readouterr().out)
    path.write_text("vlans: {}\n")
    assert cli.main(["dhcp-options", "--config", str(path)]) == cli.EXIT_INVALID
