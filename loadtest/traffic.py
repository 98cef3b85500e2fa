"""Counting the mDNS packets a router-side process sends, and avahi-daemon as the comparison.

``Capture`` runs one ``tcpdump -Q out`` per VLAN bridge in the router namespace: on a bridge
device, outbound packets are the ones the router itself originates (frames forwarded between
ports never pass through it), so the count is exactly what the process under test sent.

``AvahiBrowser`` is avahi-daemon in the router namespace on the same bridges, publishing
nothing, with ``avahi-browse --all --resolve`` attached over a private D-Bus system bus: it
browses every service type and resolves every instance, the closest avahi gets to what the
gateway does (keep every service of every VLAN known). For the memory phase it runs without
avahi-browse and with its cache raised (``cache_entries_max``), holding what it hears.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rdatatype

from netlab.lab import Lab, poll_until, terminate

from . import procstat


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


def pcap_frames(path: Path) -> list[tuple[float, bytes]]:
    """(timestamp, captured bytes) of each frame of a classic pcap file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    if len(data) < 24:
        return []
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    i, out = 24, []
    while i + 16 <= len(data):
        sec, frac, incl = struct.unpack_from(endian + "III", data, i)
        out.append((sec + frac / (1e9 if nano else 1e6), data[i + 16 : i + 16 + incl]))
        i += 16 + incl
    return out


def udp_payload(frame: bytes) -> bytes | None:
    """The UDP payload of an Ethernet frame (IPv4 or IPv6, no extension headers)."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype == 0x0800:
        ihl = (frame[14] & 0x0F) * 4
        return frame[14 + ihl + 8 :] if frame[14 + 9] == 17 else None
    if ethertype == 0x86DD:
        return frame[14 + 40 + 8 :] if frame[14 + 6] == 17 else None
    return None


BROWSE, OTHER, RESPONSE = "browse", "other_query", "response"


def classify(payload: bytes) -> tuple[str, bool]:
    """(kind, asks for the service-type enumeration) of one mDNS packet: a response, a query
    whose every question is a PTR browse (``_services._dns-sd._udp`` or ``_type._proto``), or
    another query (refreshes of SRV, TXT, addresses; instances' follow-ups; on-demand)."""
    try:
        msg = dns.message.from_wire(payload, ignore_trailing=True)
    except Exception:  # a frame cut by the snap length: counted, kind unknown
        return OTHER, False
    if msg.flags & dns.flags.QR:
        return RESPONSE, False
    enumeration = False
    browse = bool(msg.question)
    for q in msg.question:
        labels = q.name.labels
        if q.rdtype != dns.rdatatype.PTR or len(labels) < 3:
            browse = False
            continue
        if labels[0].lower() == b"_services":
            enumeration = True
        elif not (labels[0].startswith(b"_") and labels[1].lower() in (b"_tcp", b"_udp")):
            browse = False
    return (BROWSE if browse else OTHER), enumeration


def kinds(path: Path, t0: float, t1: float) -> dict[str, Any]:
    """Packets of one capture between ``t0`` and ``t1`` (pcap clock) by kind, and the browse
    rounds: how many times the service-type enumeration was asked (IPv4 packets only, so a
    round over both families counts once)."""
    out: dict[str, Any] = {BROWSE: 0, OTHER: 0, RESPONSE: 0, "rounds": 0}
    for ts, frame in pcap_frames(path):
        if not t0 <= ts <= t1:
            continue
        payload = udp_payload(frame)
        if payload is None:
            continue
        kind, enumeration = classify(payload)
        out[kind] += 1
        if enumeration and struct.unpack_from("!H", frame, 12)[0] == 0x0800:
            out["rounds"] += 1
    return out


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
                "1500",  # whole queries: each is classified (browse or refresh)
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

    def kinds(self, t0: float = 0.0, t1: float = float("inf")) -> dict[str, dict[str, Any]]:
        """Per VLAN: the captured packets by kind between ``t0`` and ``t1`` (time.time())."""
        return {vlan: kinds(self.dir / f"{vlan}.pcap", t0, t1) for vlan in self.procs}


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
cache-entries-max={cache_entries_max}
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


# avahi-daemon's SIGUSR1 dump (avahi_server_dump): its zone, then each interface's cache
_DUMP_START = "Got SIGUSR1"
_CACHE_LINE = re.compile(r"^\S+\s+IN\s+[A-Z]+\s")


class AvahiBrowser:
    """``browse``: attach avahi-browse; ``cache_entries_max``: records avahi caches per
    interface and protocol (its default, 4096, would hold a third of 10,000 services' VLAN)."""

    def __init__(self, lab: Lab, *, browse: bool = True, cache_entries_max: int = 4096) -> None:
        self.lab = lab
        self.browse = browse
        self.dir = lab.workdir / "avahi-router"
        self.dir.mkdir(exist_ok=True)
        self.socket = self.dir / "system_bus_socket"
        (self.dir / "dbus.conf").write_text(_DBUS_CONF.format(socket=self.socket))
        bridges = ",".join(v.bridge for v in lab.vlans.values())
        (self.dir / "avahi-daemon.conf").write_text(
            _AVAHI_CONF.format(interfaces=bridges, cache_entries_max=cache_entries_max)
        )
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
        if not self.browse:
            return
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

    @property
    def daemon(self) -> subprocess.Popen[Any]:
        """avahi-daemon's process (unshare and sh exec into it: the same pid)."""
        return self.procs[1]

    def rss(self) -> int:
        return procstat.rss_bytes(self.daemon.pid, tree=True)

    def cached_records(self, timeout: float = 30.0) -> int:
        """Records in avahi's cache, every interface: its dump (SIGUSR1) counted."""
        start = len(self.logs())
        os.kill(self.daemon.pid, signal.SIGUSR1)
        poll_until(
            lambda: _DUMP_START in self.logs()[start:],
            timeout,
            message="avahi-daemon's cache dump",
        )
        # the dump has no end line: it is complete when the log stops growing
        size = -1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(dump := self.logs()[start:]) != size:
            size = len(dump)
            time.sleep(0.3)
        return sum(1 for line in dump.splitlines() if _CACHE_LINE.match(line))

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
