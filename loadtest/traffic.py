"""Counting the mDNS packets a router-side process sends, and avahi-daemon as the comparison.

``Capture`` runs one ``tcpdump -Q out`` per VLAN bridge in the router namespace: on a bridge
device, outbound packets are the ones the router itself originates (frames forwarded between
ports never pass through it), so the count is exactly what the process under test sent.

``AvahiBrowser`` is avahi-daemon in the router namespace on the same bridges, publishing
nothing, with ``avahi-browse --all --resolve`` attached over a private D-Bus system bus: it
browses every service type and resolves every instance, the closest avahi gets to what the
gateway does (keep every service of every VLAN known).
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
from pathlib import Path
from typing import Any

from netlab.lab import Lab, poll_until, terminate


def pcap_count(path: Path) -> tuple[int, int]:
    """(packets, bytes on the wire) in a classic pcap file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0, 0
    if len(data) < 24:
        return 0, 0
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    i, packets, size = 24, 0, 0
    while i + 16 <= len(data):
        incl, orig = struct.unpack_from(endian + "II", data, i + 8)
        packets += 1
        size += orig
        i += 16 + incl
    return packets, size


class Capture:
    def __init__(self, lab: Lab, name: str) -> None:
        self.lab = lab
        self.dir = lab.workdir / f"capture-{name}"
        self.dir.mkdir(exist_ok=True)
        self.procs: dict[str, subprocess.Popen[Any]] = {}

    def start(self) -> None:
        for vlan in self.lab.vlans.values():
            path = self.dir / f"{vlan.name}.pcap"
            self.procs[vlan.name] = self.lab.popen(
                self.lab.gw,
                "tcpdump",
                "-i",
                vlan.bridge,
                "-Q",
                "out",
                "-nn",
                "-s",
                "128",
                "-U",
                "-w",
                str(path),
                "udp",
                "port",
                "5353",
                name=f"tcpdump-{vlan.bridge}",
            )
        poll_until(
            lambda: all((self.dir / f"{v}.pcap").exists() for v in self.procs),
            10.0,
            message="tcpdump to start",
        )

    def stop(self) -> dict[str, dict[str, int]]:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                terminate(proc)
        out = {}
        for vlan in self.procs:
            packets, size = pcap_count(self.dir / f"{vlan}.pcap")
            out[vlan] = {"packets": packets, "bytes": size}
        return out


_DBUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

_AVAHI_CONF = """[server]
use-ipv4=yes
use-ipv6=yes
enable-dbus=yes
allow-interfaces={interfaces}
ratelimit-interval-usec=1000000
ratelimit-burst=1000
[wide-area]
enable-wide-area=no
[publish]
disable-publishing=yes
publish-addresses=no
publish-hinfo=no
publish-workstation=no
[reflector]
enable-reflector=no
"""


class AvahiBrowser:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.dir = lab.workdir / "avahi-router"
        self.dir.mkdir(exist_ok=True)
        self.socket = self.dir / "system_bus_socket"
        (self.dir / "dbus.conf").write_text(_DBUS_CONF.format(socket=self.socket))
        bridges = ",".join(v.bridge for v in lab.vlans.values())
        (self.dir / "avahi-daemon.conf").write_text(_AVAHI_CONF.format(interfaces=bridges))
        self.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={self.socket}")
        self.procs: list[subprocess.Popen[Any]] = []
        self.browse_log = self.dir / "avahi-browse.txt"

    def start(self) -> None:
        lab, d = self.lab, self.dir
        self.procs.append(
            lab.popen(
                lab.gw,
                "dbus-daemon",
                "--nofork",
                "--nopidfile",
                f"--config-file={d / 'dbus.conf'}",
                name="dbus-daemon",
            )
        )
        poll_until(self.socket.exists, 10.0, message="dbus-daemon socket")
        script = (
            "set -e; mount -t tmpfs -o mode=0755 tmpfs /run; mkdir -p /run/avahi-daemon; "
            'exec avahi-daemon -f "$1" --no-drop-root --no-chroot --no-rlimits'
        )
        with (d / "avahi.log").open("ab") as logf:
            self.procs.append(
                lab.popen(
                    lab.gw,
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    script,
                    "avahi-wrapper",
                    str(d / "avahi-daemon.conf"),
                    name="avahi-daemon@router",
                    env=self.env,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                )
            )
        poll_until(
            lambda: "Server startup complete" in self.logs(),
            15.0,
            message=lambda: f"avahi-daemon to start:\n{self.logs()[-2000:]}",
        )
        with self.browse_log.open("ab") as out:
            self.procs.append(
                lab.popen(
                    lab.gw,
                    "avahi-browse",
                    "--all",
                    "--resolve",
                    "--parsable",
                    "--no-db-lookup",
                    name="avahi-browse",
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )

    def logs(self) -> str:
        try:
            return (self.dir / "avahi.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def resolved(self) -> int:
        """Services avahi-browse has resolved so far (lines starting with '=')."""
        try:
            lines = self.browse_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return 0
        return len({tuple(ln.split(";")[1:6]) for ln in lines if ln.startswith("=")})

    def stop(self) -> None:
        for proc in reversed(self.procs):
            terminate(proc)
        self.procs.clear()
