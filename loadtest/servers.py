"""The servers under test, started in the lab's router namespace and pinned to one core."""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dns.message

from netlab.lab import (
    GatewayProcess,
    Lab,
    LabError,
    gateway_config,
    netns_socket,
    terminate,
)
from netlab.widearea import ZONE, knot_config

from . import compiled, procstat

GATEWAY_PORT = 5300
GATEWAY_HTTP = ("127.0.0.1", 9353)
NSD_PORT = 5399
KNOT_PORT = 5394
# A gateway at rest: RSS read every REST_INTERVAL s once it is fully up, settled when one
# interval moved it by less than REST_SETTLED (the memory keeper's ticks and the first
# /metrics read move it by ~10-150 kB; the late imports, +14 MB, are over by then).
REST_INTERVAL = 0.5  # s
REST_SETTLED = 64 * 1024  # bytes
REST_TIMEOUT = 30.0  # s; up and settled by then, or the figure is not one at rest


def first_answer(ns: str, addr: str, port: int, timeout: float = 30.0, alive: Any = None) -> float:
    """Poll ``addr:port`` with ``. NS`` every 5 ms; returns when any reply arrives (monotonic)."""
    sock = netns_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
    deadline = time.monotonic() + timeout
    with sock:
        sock.connect((addr, port))
        sock.settimeout(0.005)
        wire = dns.message.make_query(".", "NS").to_wire()
        while time.monotonic() < deadline:
            if alive is not None and not alive():
                raise LabError(f"server on {addr}:{port} exited before answering")
            try:
                sock.send(wire)
                sock.recv(4096)
                return time.monotonic()
            except (TimeoutError, ConnectionRefusedError):
                continue
    raise TimeoutError(f"no answer from {addr}:{port} within {timeout}s")


class Nsd:
    """NSD 4 serving the generated zones: one server process, rate limiting off."""

    name = "nsd"

    def __init__(
        self,
        lab: Lab,
        zones: Mapping[str, str],
        *,
        core: int,
        addr: str = "127.0.0.1",
        port: int = NSD_PORT,
    ) -> None:
        self.lab = lab
        self.addr, self.port, self.core = addr, port, core
        self.dir = lab.workdir / "nsd"
        self.dir.mkdir(exist_ok=True)
        zone_conf = []
        for i, (origin, text) in enumerate(zones.items()):
            (self.dir / f"z{i}.zone").write_text(text)
            zone_conf.append(f"zone:\n  name: {origin}\n  zonefile: z{i}.zone\n")
        d = self.dir
        self.conf = d / "nsd.conf"
        self.conf.write_text(
            "server:\n"
            f"  ip-address: {addr}@{port}\n"
            '  server-count: 1\n  reuseport: no\n  username: ""\n  chroot: ""\n'
            f'  zonesdir: "{d}"\n  database: ""\n  pidfile: "{d}/nsd.pid"\n'
            f'  xfrdfile: "{d}/xfrd.state"\n  zonelistfile: "{d}/zone.list"\n'
            f'  logfile: "{d}/nsd.log"\n  rrl-ratelimit: 0\n  verbosity: 1\n'
            "  tcp-count: 512\n  tcp-query-count: 0\n  tcp-timeout: 120\n"
            "remote-control:\n  control-enable: no\n" + "".join(zone_conf)
        )
        self.proc: Any = None
        self.started_in: float | None = None

    def start(self) -> None:
        t0 = time.monotonic()
        self.proc = self.lab.popen(
            self.lab.gw,
            "taskset",
            "-c",
            str(self.core),
            "nsd",
            "-d",
            "-c",
            str(self.conf),
            name="nsd",
        )
        t1 = first_answer(self.lab.gw, self.addr, self.port, alive=self.running)
        self.started_in = t1 - t0

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return int(self.proc.pid)

    def rss(self) -> int:
        return procstat.rss_bytes(self.pid, tree=True)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)

    def version(self) -> str:
        out = self.lab.run(None, "nsd", "-v", check=False)
        m = re.search(r"NSD version (\S+)", out.stdout + out.stderr)
        return m.group(1) if m else "?"


class Gateway:
    """``python -m bridge run`` in the router namespace, pinned, listening like the lab tests
    (127.0.0.1:5300 serves the router's ``*`` view, which sees every VLAN)."""

    name = "gateway"

    def __init__(
        self,
        lab: Lab,
        *,
        core: int | None,
        overrides: Mapping[str, Any] | None = None,
        log_level: str = "info",
        env: Mapping[str, str] | None = None,
        wrap: Sequence[str] = (),
    ) -> None:
        # the workload's devices (loadtest/workload.py) and the cold phase's quiet ones have
        # addresses across 10.N.0.0/16, beyond the lab's /24: the VLANs' subnets say so, or the
        # record guard refuses their A records as not on the VLAN
        vlans = {v.name: {"subnets": [f"10.{v.id}.0.0/16", v.subnet6]} for v in lab.vlans.values()}
        cfg = gateway_config(
            lab,
            vlans=vlans,
            dns={"default_view": "*"},
            cache={"max_records": 200_000},
            http={"listen": f"{GATEWAY_HTTP[0]}:{GATEWAY_HTTP[1]}"},
            **dict(overrides or {}),
        )
        argv, build_env = compiled.launch(log_level)
        argv = [*wrap, *argv]  # e.g. valgrind (loadtest/startcost.py)
        if core is not None:
            argv = ["taskset", "-c", str(core), *argv]
        self.lab = lab
        self.proc = GatewayProcess(lab, cfg, command=argv, env={**build_env, **(env or {})})
        self.addr, self.port = "127.0.0.1", GATEWAY_PORT
        self.started_in: float | None = None

    def start(self, timeout: float = 30.0) -> None:
        t0 = time.monotonic()
        self.proc.start()
        t1 = first_answer(
            self.lab.gw, self.addr, self.port, timeout, alive=lambda: self.proc.running
        )
        self.started_in = t1 - t0

    def running(self) -> bool:
        return self.proc.running

    @property
    def pid(self) -> int:
        assert self.proc.proc is not None
        return int(self.proc.proc.pid)

    def rss(self) -> int:
        return procstat.rss_bytes(self.pid)

    def rss_at_rest(self) -> int:
        """VmRSS once the gateway is fully up and settled, what it holds at rest: ``start``
        returns at the first DNS answer, before the worker thread has imported aiohttp and
        prometheus_client and the HTTP surface is up (~14 MB later). Waits for HTTP to accept
        (``GatewayProcess.wait_ready``: every component started), reads /metrics once (as a
        scrape would; the memory phase's steps read it too), then until RSS settles."""
        deadline = time.monotonic() + REST_TIMEOUT
        self.proc.wait_ready(self.addr, self.port, timeout=REST_TIMEOUT)
        self.metrics()
        last = self.rss()
        while time.monotonic() < deadline:
            time.sleep(REST_INTERVAL)  # polling a figure, not waiting for an event
            now = self.rss()
            if abs(now - last) < REST_SETTLED:
                return now
            last = now
        raise LabError(f"gateway RSS did not settle within {REST_TIMEOUT}s: {last} bytes")

    def stop(self) -> None:
        self.proc.stop()

    def logs(self) -> str:
        return self.proc.logs()

    def metrics(self) -> dict[str, float]:
        """The unlabelled Prometheus samples from /metrics (name -> value)."""
        for attempt in range(50):  # HTTP comes up just after DNS
            sock = netns_socket(self.lab.gw, socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(5.0)
            try:
                sock.connect(GATEWAY_HTTP)
                break
            except ConnectionRefusedError:
                sock.close()
                if attempt == 49:
                    raise
                time.sleep(0.1)
        with sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: gw\r\n\r\n")
            chunks = []
            while data := sock.recv(65536):
                chunks.append(data)
        text = b"".join(chunks).decode(errors="replace")
        out: dict[str, float] = {}
        for line in text.splitlines():
            m = re.match(r"^([a-z_]+) ([0-9.e+-]+)$", line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out

    def store_records(self) -> int:
        return int(self.metrics().get("mdns_gateway_store_records", 0))


class Knot:
    """knotd serving the wide-area zone from the README's knot.conf block (netlab/widearea.py),
    with a fresh TSIG key, in the router namespace; ``start`` begins from an empty zone."""

    def __init__(self, lab: Lab, *, port: int = KNOT_PORT) -> None:
        self.lab, self.port = lab, port
        self.dir = lab.workdir / "knot"
        self.secret = base64.b64encode(os.urandom(32)).decode()
        self.key_file = lab.workdir / "tsig.key"
        self.key_file.write_text(self.secret + "\n")  # the bare base64 form
        self.key_file.chmod(0o600)
        self.proc: Any = None

    def start(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)  # no journal: the zone as its file says
        conf = knot_config(self.dir, self.secret, self.port)
        log = (self.dir / "knotd.log").open("ab")
        with log:
            self.proc = self.lab.popen(
                self.lab.gw, "knotd", "-c", str(conf), name="knotd", stdout=log, stderr=log
            )
        deadline = time.monotonic() + 20.0
        while "SOA" not in self._axfr(check=False):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise LabError(f"knotd did not serve {ZONE}: see {self.dir / 'knotd.log'}")
            time.sleep(0.1)

    def _axfr(self, check: bool = True) -> str:
        res = self.lab.run(
            self.lab.gw,
            "kdig",
            "@127.0.0.1",
            "-p",
            str(self.port),
            "-y",
            f"hmac-sha256:mdns-gateway:{self.secret}",
            f"{ZONE}.",
            "AXFR",
            "+nocomments",
            check=check,
        )
        return str(res.stdout)

    def counts(self) -> dict[str, int]:
        """Records in the zone by type (a TSIG AXFR with kdig), SOA, NS and TSIG left out."""
        out: dict[str, int] = {}
        for line in self._axfr().splitlines():
            fields = line.split(None, 4)
            if len(fields) == 5 and not line.startswith(";"):
                out[fields[3]] = out.get(fields[3], 0) + 1
        for rdtype in ("SOA", "NS", "TSIG"):
            out.pop(rdtype, None)
        out["A"] = out.get("A", 0) - 1  # ns.<zone>, the zone file's own
        return out

    def wide_area_config(self, reconcile_interval: float) -> dict[str, Any]:
        return {
            "server": f"127.0.0.1:{self.port}",
            "zone": f"{ZONE}.",
            "tsig": {"name": "mdns-gateway.", "secret_file": str(self.key_file)},
            "reconcile_interval": reconcile_interval,
        }

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None


def write_file(path: Path, data: bytes | str) -> Path:
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path
