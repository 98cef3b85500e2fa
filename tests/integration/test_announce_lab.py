"""ServiceAnnouncements (issue 19) in the namespace lab, against real peers.

Topology (tests/integration/conftest.py: VLANs trusted=10, iot=20, guest=30, two hosts each):

* the gateway in the router namespace with a policies directory holding the issue's
  ``office-printer`` announcement (trusted and iot) and ``nas`` (trusted), whose host name
  ``storage`` a real avahi-daemon on ``trusted2`` already uses;
* python-zeroconf browsers on ``trusted1``, ``iot1`` and ``guest1``; ``dig`` from each.

Checked: the printer is found by mDNS (SRV, TXT, address, subtype) on both listed VLANs and not
on guest, and by dig in the trusted and iot views (wide-area names, ``.local``, reverse PTR);
avahi keeps ``storage.local`` (no rename on either side), the gateway logs the conflict and
counts it, and ``storage.trusted.home.arpa`` answers the device's address; deleting the file
sends goodbyes (the browser sees the printer removed) and empties the DNS answers.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netlab.lab import (
    AvahiPublisher,
    GatewayProcess,
    Host,
    Lab,
    ZeroconfBrowser,
    gateway_config,
    gateway_ready,
    parse_dig_short,
    poll_until,
    run,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

PRINTER = """\
apiVersion: mdnsgateway.io/v1alpha1
kind: ServiceAnnouncement
metadata: {name: office-printer}
spec:
  vlans: [trusted, iot]
  instance: Office Printer
  type: _ipp._tcp
  subtypes: [_universal]
  host: printer
  addresses: [10.10.0.50]
  port: 631
  txt: {rp: printers/office, pdl: application/pdf}
"""
NAS = """\
apiVersion: mdnsgateway.io/v1alpha1
kind: ServiceAnnouncement
metadata: {name: nas}
spec:
  vlans: [trusted]
  instance: Storage
  type: _smb._tcp
  host: storage
  addresses: [10.10.0.60]
  port: 445
"""


def dig(lab: Lab, host: Host, *args: str) -> list[str]:
    return parse_dig_short(lab.dig(host.ns, f"@{host.router_ipv4}", "-p", "5300", "+short", *args))


def metrics(lab: Lab) -> str:
    code = (
        "import urllib.request as u;"
        "print(u.urlopen('http://127.0.0.1:9353/metrics', timeout=5).read().decode())"
    )
    return run(lab.gw, sys.executable, "-c", code).stdout


@pytest.fixture(scope="module")
def world(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    policies = tmp_path_factory.mktemp("announce-policies")
    (policies / "printer.yaml").write_text(PRINTER)
    (policies / "nas.yaml").write_text(NAS)
    shutil.copy(Path(__file__).parents[2] / "policies" / "crd-announcement.yaml", policies)
    device = AvahiPublisher(lab, lab.hosts["trusted2"], host_name="storage")
    device.start()
    device.wait_running()
    browsers = {
        name: ZeroconfBrowser(lab, lab.hosts[name], ["_ipp._tcp", "_smb._tcp"])
        for name in ("trusted1", "iot1", "guest1")
    }
    for b in browsers.values():
        b.wait_started()
    with gateway_ready(lab, gateway_config(lab, policies=str(policies))) as gw:
        yield {"gw": gw, "policies": policies, "device": device, "browsers": browsers}
    for b in browsers.values():
        b.stop()
    device.stop()


def test_found_by_mdns_and_dns_on_the_listed_vlans_only(lab: Lab, world: dict[str, Any]) -> None:
    browsers = world["browsers"]
    for name in ("trusted1", "iot1"):
        found = browsers[name].wait_resolved("Office Printer", timeout=20)
        assert found["server"] == "printer.local." and found["port"] == 631
        assert found["addresses"] == ["10.10.0.50"]
        assert found["txt"] == {"rp": "printers/office", "pdl": "application/pdf"}
    trusted1, iot1, guest1 = (lab.hosts[n] for n in ("trusted1", "iot1", "guest1"))
    for host, view in ((trusted1, "trusted"), (iot1, "iot")):
        domain = f"{view}.home.arpa."
        inst = f"Office\\032Printer._ipp._tcp.{domain}"
        assert dig(lab, host, f"_ipp._tcp.{domain}", "PTR") == [inst]
        assert dig(lab, host, f"_universal._sub._ipp._tcp.{domain}", "PTR") == [inst]
        assert dig(lab, host, inst, "SRV") == [f"0 0 631 printer.{domain}"]
        assert dig(lab, host, f"printer.{domain}", "A") == ["10.10.0.50"]
        assert dig(lab, host, "printer.local", "A") == ["10.10.0.50"]
    assert dig(lab, trusted1, "-x", "10.10.0.50") == ["printer.trusted.home.arpa."]
    # guest is not listed and no policy shows it the others' services
    assert dig(lab, guest1, "_ipp._tcp.guest.home.arpa.", "PTR") == []
    assert dig(lab, guest1, "printer.local", "A") == []
    assert not browsers["guest1"].seen("Office Printer")


def test_the_device_keeps_its_name_and_the_gateway_logs_it(lab: Lab, world: dict[str, Any]) -> None:
    gw: GatewayProcess = world["gw"]
    device: AvahiPublisher = world["device"]
    poll_until(
        lambda: "storage.local. is held by another device there" in gw.logs(),
        20,
        message=lambda: f"the gateway to log the conflict:\n{gw.logs()[-3000:]}",
    )
    assert device.host_name == "storage"  # avahi never had to rename
    assert "storage-2" not in gw.logs() and "renamed" not in gw.logs()
    trusted1 = lab.hosts["trusted1"]
    assert dig(lab, trusted1, "storage.trusted.home.arpa.", "A") == [device.host.ipv4]
    assert dig(lab, trusted1, "Storage._smb._tcp.trusted.home.arpa.", "SRV") == []
    text = metrics(lab)
    conflicts = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("mdns_gateway_announce_conflicts_total")
    ]
    assert conflicts and conflicts[0] >= 1, text
    assert 'mdns_gateway_announce_registrations{state="conflict"} 1.0' in text


def test_deleting_the_file_says_goodbye(lab: Lab, world: dict[str, Any]) -> None:
    browser: ZeroconfBrowser = world["browsers"]["trusted1"]
    browser.wait_resolved("Office Printer", timeout=20)
    mark = len(browser.events)
    (world["policies"] / "printer.yaml").unlink()
    browser.wait_removed("Office Printer", timeout=10, start=mark)
    trusted1 = lab.hosts["trusted1"]
    poll_until(
        lambda: dig(lab, trusted1, "printer.trusted.home.arpa.", "A") == [],
        10,
        message="printer.trusted.home.arpa to be gone from DNS",
    )
    assert dig(lab, trusted1, "_ipp._tcp.trusted.home.arpa.", "PTR") == []
