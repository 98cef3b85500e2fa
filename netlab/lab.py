"""A VLAN lab in Linux network namespaces, for the integration tests and the load test.

Topology (see shared/notes/netns-lab.md)::

    <prefix>gw   router namespace: one Linux bridge brN per VLAN N (multicast snooping off),
                 10.N.0.1/24 and fd00:N::1/64 on it; the gateway under test runs here.
    <prefix><h>  one namespace per host: eth0 (a veth whose peer vNxK sits in brN),
                 10.N.0.K/24, fd00:N::K/64 and a link-local address.

Everything (multicast included) stays inside namespaces that the lab creates. ``Lab.close()``
kills every process the lab started, kills whatever still runs inside its namespaces and deletes
them; ``Lab`` is a context manager, and stale labs of dead test runs are reaped on start.

Helpers: ``run``/``popen`` (``ip netns exec``), ``netns_socket`` (a socket created inside a
namespace, usable from this process), ``query``/``exchange`` (dnspython over such sockets),
``dig`` and its parsers, ``AvahiPublisher`` (a real avahi-daemon per host), ``ZeroconfPublisher``
and ``ZeroconfBrowser`` (python-zeroconf in a host namespace), ``GatewayProcess`` and
``gateway_config`` (the gateway under test in the router namespace).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import escape as _xml_escape

import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Where the helper scripts run in host namespaces (``zc_publish.py``, ``zc_browse.py``) live.
NETLAB_DIR = Path(__file__).resolve().parent
NETNS_RUN_DIR = Path("/run/netns")
#: Where each live lab records its owner pid, so a later run can reap labs of killed runs.
STATE_DIR = Path(tempfile.gettempdir()) / "mdns-gateway-lab"
IFNAMSIZ = 15  # longest interface / namespace name we allow (Linux IFNAMSIZ - 1)
HOST_IFNAME = "eth0"

_CLONE_NEWNET = 0x40000000
Socket = socket.socket  # Lab.socket() shadows the module name inside the class body
QType = dns.rdatatype.RdataType | str
QClass = dns.rdataclass.RdataClass | str


class LabError(RuntimeError):
    """A lab operation failed."""


# --------------------------------------------------------------------------------------------
# running commands in namespaces


def _ns_argv(ns: str | None, cmd: Sequence[str | os.PathLike[str]]) -> list[str]:
    argv = [os.fspath(c) for c in cmd]
    return argv if ns is None else ["ip", "netns", "exec", ns, *argv]


def run(
    ns: str | None,
    *cmd: str | os.PathLike[str],
    check: bool = True,
    timeout: float = 30.0,
    input: str | None = None,
    capture: bool = True,
    **kw: Any,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` inside namespace ``ns`` (``None``: this namespace); text output captured.

    Raises ``LabError`` (with stderr) when ``check`` and the command fails.
    """
    argv = _ns_argv(ns, cmd)
    try:
        res = subprocess.run(
            argv,
            input=input,
            capture_output=capture,
            text=True,
            timeout=timeout,
            check=False,
            **kw,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    if check and res.returncode != 0:
        raise LabError(
            f"command failed ({res.returncode}): {' '.join(argv)}\n{res.stderr or ''}".rstrip()
        )
    return res


def popen(ns: str | None, *cmd: str | os.PathLike[str], **kw: Any) -> subprocess.Popen[Any]:
    """Start ``cmd`` inside ``ns`` in its own session (so its whole group can be signalled).

    stdin/stdout/stderr default to /dev/null. Untracked: prefer ``Lab.popen``.
    """
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.DEVNULL)
    kw.setdefault("start_new_session", True)
    return subprocess.Popen(_ns_argv(ns, cmd), **kw)


def stop_gracefully(proc: subprocess.Popen[Any], timeout: float = 10.0) -> int | None:
    """SIGTERM the process itself (so it can send goodbyes), wait up to ``timeout``, then
    ``terminate`` its group; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            terminate(proc, 1.0)
    return proc.returncode


def terminate(proc: subprocess.Popen[Any], timeout: float = 5.0) -> int | None:
    """SIGTERM the process group of ``proc``, wait up to ``timeout``, then SIGKILL it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)
    else:
        # The leader is gone; children of a shell wrapper may not be.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode


def poll_until(
    predicate: Callable[[], Any],
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition",
) -> Any:
    """Call ``predicate`` until it returns a truthy value (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {text}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# sockets inside a namespace


_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def enter_netns(ns: str) -> None:
    """Move the calling thread into network namespace ``ns`` (for good: use a thread of its
    own). Sockets it makes and processes it starts live there."""
    fd = os.open(NETNS_RUN_DIR / ns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def _in_netns(ns: str | None, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a short-lived thread that has entered namespace ``ns``."""
    if ns is None:
        return fn()
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            enter_netns(ns)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    t = threading.Thread(target=worker, name=f"netns-{ns}", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def netns_socket(
    ns: str | None, family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM, proto: int = 0
) -> socket.socket:
    """A socket that lives in namespace ``ns`` (``None``: this one), usable from any thread.

    A socket belongs to the namespace it was created in; only its creation needs the namespace.
    """
    sock: socket.socket = _in_netns(ns, lambda: socket.socket(family, type, proto))
    return sock


def netns_socket_factory(ns: str | None) -> Callable[..., socket.socket]:
    """``socket.socket``-compatible factory creating sockets in ``ns``."""

    def factory(
        family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM, proto: int = 0
    ) -> socket.socket:
        return netns_socket(ns, family, type, proto)

    return factory


def _sockaddr(ns: str | None, host: str, port: int) -> tuple[int, tuple[Any, ...]]:
    """(family, sockaddr) for a literal address; ``fe80::1%eth0`` is resolved inside ``ns``."""
    host = host.strip("[]")
    scope = ""
    if "%" in host:
        host, scope = host.split("%", 1)
    ip = ipaddress.ip_address(host)
    if ip.version == 4:
        return socket.AF_INET, (host, port)
    scope_id = 0
    if scope:
        scope_id = (
            int(scope) if scope.isdigit() else _in_netns(ns, lambda: socket.if_nametoindex(scope))
        )
    return socket.AF_INET6, (host, port, 0, scope_id)


def parse_hostport(text: str) -> tuple[str, int]:
    """``'10.0.0.1:53'`` / ``'[fd00::1]:53'`` -> (host, port)."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return host, int(port)
    host, _, port = text.rpartition(":")
    return host, int(port)


# --------------------------------------------------------------------------------------------
# DNS from inside a namespace (dnspython)


def exchange(
    ns: str | None,
    server: str,
    port: int,
    msg: dns.message.Message,
    tcp: bool = False,
    timeout: float = 2.0,
) -> dns.message.Message:
    """Send ``msg`` to ``server:port`` from inside ``ns``; return the reply with the same ID.

    UDP replies with another ID are ignored until ``timeout``; raises ``TimeoutError``.
    """
    family, addr = _sockaddr(ns, server, port)
    wire = msg.to_wire()
    deadline = time.monotonic() + timeout
    sock = netns_socket(ns, family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    with sock:
        sock.settimeout(timeout)
        sock.connect(addr)
        if tcp:
            sock.sendall(struct.pack("!H", len(wire)) + wire)
            while True:
                (length,) = struct.unpack("!H", _recv_exact(sock, 2, deadline))
                data = _recv_exact(sock, length, deadline)
                reply = dns.message.from_wire(data)
                if reply.id == msg.id:
                    return reply
        sock.send(wire)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no reply from {server}:{port}")
            sock.settimeout(remaining)
            try:
                data = sock.recv(65535)
            except TimeoutError as exc:
                raise TimeoutError(f"no reply from {server}:{port}") from exc
            if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == msg.id:
                return dns.message.from_wire(data)


def _recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    buf = b""
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("TCP read timed out")
        sock.settimeout(remaining)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by peer")
        buf += chunk
    return buf


def query(
    ns: str | None,
    server: str,
    port: int,
    qname: str | dns.name.Name,
    qtype: QType = "A",
    tcp: bool = False,
    *,
    timeout: float = 2.0,
    rdclass: QClass = "IN",
    **make_query_kw: Any,
) -> dns.message.Message:
    """dnspython query from inside ``ns``. ``make_query_kw`` go to ``dns.message.make_query``
    (e.g. ``use_edns=0, payload=1232, want_dnssec=True, flags=0``)."""
    msg = dns.message.make_query(qname, qtype, rdclass, **make_query_kw)
    return exchange(ns, server, port, msg, tcp=tcp, timeout=timeout)


# --------------------------------------------------------------------------------------------
# dig


def dig(ns: str | None, *args: str, time_s: int = 1, tries: int = 2, timeout: float = 20.0) -> str:
    """Run ``dig +time=<time_s> +tries=<tries> *args`` inside ``ns``; return stdout.

    dig exits 9 when no server answered; that is returned as text (";; ... timed out"), not raised.
    """
    res = run(ns, "dig", f"+time={time_s}", f"+tries={tries}", *args, check=False, timeout=timeout)
    if res.returncode not in (0, 9):
        raise LabError(f"dig failed ({res.returncode}): {res.stderr}{res.stdout}")
    return res.stdout


def parse_dig_short(out: str) -> list[str]:
    """Lines of ``dig +short`` output (comments and blanks dropped)."""
    return [ln.strip() for ln in out.splitlines() if ln.strip() and not ln.startswith(";")]


@dataclass
class DigRecord:
    name: str
    ttl: int
    rdclass: str
    rdtype: str
    rdata: str


@dataclass
class DigResponse:
    status: str | None = None  # NOERROR, NXDOMAIN, ... (None: no reply)
    flags: set[str] = field(default_factory=set)
    question: list[str] = field(default_factory=list)
    answer: list[DigRecord] = field(default_factory=list)
    authority: list[DigRecord] = field(default_factory=list)
    additional: list[DigRecord] = field(default_factory=list)
    edns: bool = False
    raw: str = ""


_DIG_HEADER = re.compile(r"->>HEADER<<- opcode: (\S+), status: (\S+), id: (\d+)")
_DIG_FLAGS = re.compile(r";; flags:([^;]*);")
_DIG_SECTION = re.compile(r";; (QUESTION|ANSWER|AUTHORITY|ADDITIONAL) SECTION:")


def parse_dig(out: str) -> DigResponse:
    """Parse the default (full) output of one dig query."""
    res = DigResponse(raw=out)
    if m := _DIG_HEADER.search(out):
        res.status = m.group(2).rstrip(",")
    if m := _DIG_FLAGS.search(out):
        res.flags = set(m.group(1).split())
    res.edns = "OPT PSEUDOSECTION" in out
    section: str | None = None
    for line in out.splitlines():
        if m := _DIG_SECTION.match(line):
            section = m.group(1)
            continue
        if not line.strip():
            section = None
            continue
        if section is None:
            continue
        if section == "QUESTION":
            res.question.append(line.lstrip(";").strip())
            continue
        if line.startswith(";"):
            continue
        parts = line.split(None, 4)
        if len(parts) < 4:
            continue
        rec = DigRecord(
            parts[0], int(parts[1]), parts[2], parts[3], parts[4] if len(parts) > 4 else ""
        )
        {"ANSWER": res.answer, "AUTHORITY": res.authority, "ADDITIONAL": res.additional}[
            section
        ].append(rec)
    return res


# --------------------------------------------------------------------------------------------
# the lab


@dataclass
class Vlan:
    name: str
    id: int
    bridge: str  # brN, in the router namespace
    ipv4: str  # router address 10.N.0.1
    ipv6: str  # router address fd00:N::1
    subnet4: str
    subnet6: str
    hosts: list[Host] = field(default_factory=list)


@dataclass
class Host:
    name: str  # logical name, e.g. "trusted1"
    ns: str  # namespace name
    vlan: str  # VLAN name
    vlan_id: int
    index: int  # K in 10.N.0.K
    ipv4: str
    ipv6: str
    ifname: str = HOST_IFNAME
    peer_ifname: str = ""  # the veth end in the router namespace (a port of brN)
    router_ipv4: str = ""
    router_ipv6: str = ""
    link_local: str | None = None  # fe80::... of eth0, set by Lab.wait_ipv6_ready()
    mac: str = ""


def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def lab_available() -> tuple[bool, str]:
    """(True, "") when this process can build labs: root and a working ``ip netns``."""
    if os.geteuid() != 0:
        return False, "the VLAN lab needs root (network namespaces)"
    if shutil.which("ip") is None:
        return False, "iproute2 'ip' not found"
    try:
        res = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"'ip netns' unavailable: {exc}"
    if res.returncode != 0:
        return False, f"'ip netns' unavailable: {res.stderr.strip()}"
    return True, ""


def reap_stale_labs() -> list[str]:
    """Delete namespaces of labs whose owning process is gone; return their names."""
    reaped: list[str] = []
    if not STATE_DIR.is_dir():
        return reaped
    for path in STATE_DIR.glob("*.json"):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _proc_start_time(int(state["pid"])) == state.get("start"):
            continue  # owner still alive
        for ns in state.get("namespaces", []):
            if (NETNS_RUN_DIR / ns).exists():
                _kill_ns_processes(ns)
                run(None, "ip", "netns", "del", ns, check=False)
                reaped.append(ns)
        with contextlib.suppress(OSError):
            path.unlink()
    return reaped


def _kill_ns_processes(ns: str) -> None:
    res = run(None, "ip", "netns", "pids", ns, check=False)
    for pid in res.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


_LIVE_LABS: weakref.WeakSet[Lab] = weakref.WeakSet()


@atexit.register
def _close_live_labs() -> None:
    for lab in list(_LIVE_LABS):
        lab.close()


class Lab:
    """Router namespace with one bridge per VLAN, plus host namespaces added by ``add_host``.

    ``Lab({"trusted": 10, "iot": 20})`` builds the router at once; use it as a context manager
    or call ``close()``.
    """

    _counter = 0
    _counter_lock = threading.Lock()

    def __init__(
        self,
        vlans: Mapping[str, int],
        *,
        prefix: str | None = None,
        workdir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.vlans: dict[str, Vlan] = {}
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._procs: list[tuple[str, subprocess.Popen[Any]]] = []
        self._lock = threading.RLock()
        self._closed = False
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mglab-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        reap_stale_labs()
        _LIVE_LABS.add(self)
        try:
            self.prefix = self._create_router(prefix)
            self.gw = f"{self.prefix}gw"
            for name, vid in vlans.items():
                self._add_vlan(name, vid)
        except BaseException:
            self.close()
            raise

    # -- construction ------------------------------------------------------------------------

    def _create_router(self, prefix: str | None) -> str:
        candidates: Iterable[str]
        if prefix is not None:
            candidates = [prefix]
        else:
            with Lab._counter_lock:
                Lab._counter += 1
                start = Lab._counter
            base = f"mg{os.getpid() % 10000}"
            candidates = (
                base + "abcdefghijklmnopqrstuvwxyz"[(start - 1 + i) % 26] for i in range(26)
            )
        for cand in candidates:
            if len(cand) + 2 > IFNAMSIZ:
                raise LabError(f"prefix {cand!r} too long")
            ns = f"{cand}gw"
            if run(None, "ip", "netns", "add", ns, check=False).returncode == 0:
                self._namespaces.append(ns)
                self._save_state()
                run(None, "ip", "-n", ns, "link", "set", "lo", "up")
                self._sysctl(ns, "net.ipv6.conf.all.forwarding", "0")
                return cand
        raise LabError("could not create a router namespace: all candidate names taken")

    def _sysctl(self, ns: str, key: str, value: str) -> None:
        run(ns, "sysctl", "-q", "-w", f"{key}={value}")

    def _save_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "start": _proc_start_time(os.getpid()),
            "namespaces": self._namespaces,
        }
        name = self._namespaces[0] if self._namespaces else "pending"
        (STATE_DIR / f"{name}.json").write_text(json.dumps(state))

    def _add_vlan(self, name: str, vid: int) -> Vlan:
        if not 1 <= vid <= 255:
            raise LabError(f"VLAN id {vid} out of range 1..255 (used in 10.N.0.0/24)")
        if name in self.vlans:
            raise LabError(f"duplicate VLAN {name}")
        br = f"br{vid}"
        v = Vlan(
            name=name,
            id=vid,
            bridge=br,
            ipv4=f"10.{vid}.0.1",
            ipv6=f"fd00:{vid}::1",
            subnet4=f"10.{vid}.0.0/24",
            subnet6=f"fd00:{vid}::/64",
        )
        gw = self.gw
        run(None, "ip", "-n", gw, "link", "add", br, "type", "bridge")
        run(None, "ip", "-n", gw, "link", "set", br, "type", "bridge", "mcast_snooping", "0")
        run(None, "ip", "-n", gw, "addr", "add", f"{v.ipv4}/24", "dev", br)
        run(None, "ip", "-n", gw, "addr", "add", f"{v.ipv6}/64", "dev", br, "nodad")
        run(None, "ip", "-n", gw, "link", "set", br, "up")
        self.vlans[name] = v
        return v

    def add_host(self, vlan: str, name: str | None = None) -> Host:
        """Add a host namespace on ``vlan``: eth0 with 10.N.0.K/24, fd00:N::K/64 (K = 2, 3, ...)."""
        with self._lock:
            v = self.vlans[vlan]
            k = len(v.hosts) + 2
            if k > 254:
                raise LabError(f"VLAN {vlan} is full")
            if name is None:
                name = f"{vlan}{len(v.hosts) + 1}"
                if len(self.prefix) + len(name) > IFNAMSIZ:
                    name = f"h{v.id}x{k}"
            if name in self.hosts or name == "gw":
                raise LabError(f"duplicate host name {name}")
            ns = f"{self.prefix}{name}"
            if len(ns) > IFNAMSIZ:
                raise LabError(f"namespace name {ns!r} longer than {IFNAMSIZ} characters")
            peer = f"v{v.id}x{k}"
            host = Host(
                name=name,
                ns=ns,
                vlan=vlan,
                vlan_id=v.id,
                index=k,
                ipv4=f"10.{v.id}.0.{k}",
                ipv6=f"fd00:{v.id}::{k:x}",
                peer_ifname=peer,
                router_ipv4=v.ipv4,
                router_ipv6=v.ipv6,
            )
            run(None, "ip", "netns", "add", ns)
            self._namespaces.append(ns)
            self._save_state()
            run(None, "ip", "-n", ns, "link", "set", "lo", "up")
            # Created straight inside the namespaces: no name ever appears in the root namespace.
            run(
                None,
                "ip",
                "-n",
                self.gw,
                "link",
                "add",
                peer,
                "type",
                "veth",
                "peer",
                "name",
                HOST_IFNAME,
                "netns",
                ns,
            )
            run(None, "ip", "-n", self.gw, "link", "set", peer, "master", v.bridge)
            run(None, "ip", "-n", self.gw, "link", "set", peer, "up")
            run(None, "ip", "-n", ns, "addr", "add", f"{host.ipv4}/24", "dev", HOST_IFNAME)
            run(None, "ip", "-n", ns, "addr", "add", f"{host.ipv6}/64", "dev", HOST_IFNAME, "nodad")
            run(None, "ip", "-n", ns, "link", "set", HOST_IFNAME, "up")
            link = json.loads(run(None, "ip", "-n", ns, "-j", "link", "show", HOST_IFNAME).stdout)
            host.mac = link[0].get("address", "")
            v.hosts.append(host)
            self.hosts[name] = host
            return host

    def wait_ipv6_ready(self, timeout: float = 10.0) -> None:
        """Poll until no address in any lab namespace is tentative (DAD done for link-locals).

        Also fills ``Host.link_local``. Raises ``LabError`` on a DAD failure.
        """

        def ready() -> bool:
            for ns in list(self._namespaces):
                data = json.loads(run(None, "ip", "-n", ns, "-j", "-6", "addr", "show").stdout)
                for link in data:
                    for a in link.get("addr_info", []):
                        if a.get("dadfailed"):
                            raise LabError(f"DAD failed for {a.get('local')} in {ns}")
                        if a.get("tentative"):
                            return False
                    if link.get("ifname") in {"lo"}:
                        continue
                    has_ll = any(a.get("scope") == "link" for a in link.get("addr_info", []))
                    if not has_ll and "LOWER_UP" in link.get("flags", []):
                        return False
            return True

        poll_until(ready, timeout, interval=0.05, message="IPv6 addresses to leave tentative")
        for host in self.hosts.values():
            data = json.loads(
                run(
                    None, "ip", "-n", host.ns, "-j", "-6", "addr", "show", "dev", host.ifname
                ).stdout
            )
            for a in data[0].get("addr_info", []):
                if a.get("scope") == "link":
                    host.link_local = a["local"]

    # -- processes ---------------------------------------------------------------------------

    def run(
        self, ns: str | None, *cmd: str | os.PathLike[str], **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """``run`` (module function) — convenience."""
        return run(ns, *cmd, **kw)

    def popen(
        self, ns: str | None, *cmd: str | os.PathLike[str], name: str = "", **kw: Any
    ) -> subprocess.Popen[Any]:
        """Start ``cmd`` in ``ns``; the lab stops it at ``stop_processes``/``close``."""
        with self._lock:
            if self._closed:
                raise LabError("lab is closed")
            proc = popen(ns, *cmd, **kw)
            self._procs.append((name or os.fspath(cmd[0]), proc))
            return proc

    def process_mark(self) -> int:
        """A marker for ``stop_processes(since=...)``."""
        with self._lock:
            return len(self._procs)

    def stop_processes(self, since: int = 0, timeout: float = 5.0) -> None:
        """Terminate (newest first) the processes started after ``process_mark()`` = ``since``."""
        with self._lock:
            procs = self._procs[since:]
            del self._procs[since:]
        for _, proc in reversed(procs):
            terminate(proc, timeout)

    # -- helpers -----------------------------------------------------------------------------

    def host(self, name: str) -> Host:
        return self.hosts[name]

    def hosts_in(self, vlan: str) -> list[Host]:
        return list(self.vlans[vlan].hosts)

    def socket(
        self, ns: str | None, family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM
    ) -> Socket:
        """A socket created inside namespace ``ns``."""
        return netns_socket(ns, family, type)

    def socket_factory(self, ns: str | None) -> Callable[..., Socket]:
        return netns_socket_factory(ns)

    def query(
        self,
        ns: str | None,
        server: str,
        port: int,
        qname: str | dns.name.Name,
        qtype: QType = "A",
        tcp: bool = False,
        **kw: Any,
    ) -> dns.message.Message:
        return query(ns, server, port, qname, qtype, tcp, **kw)

    def dig(self, ns: str | None, *args: str, **kw: Any) -> str:
        return dig(ns, *args, **kw)

    @property
    def namespaces(self) -> list[str]:
        return list(self._namespaces)

    # -- teardown ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop all processes, delete all namespaces (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.stop_processes(0, timeout=3.0)
        for ns in reversed(self._namespaces):
            if (NETNS_RUN_DIR / ns).exists():
                _kill_ns_processes(ns)
                run(None, "ip", "netns", "del", ns, check=False)
        if self._namespaces:
            with contextlib.suppress(OSError):
                (STATE_DIR / f"{self._namespaces[0]}.json").unlink()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# log files


class _LogFile:
    """A log file written by a child process, read incrementally by the test."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def text(self) -> str:
        try:
            return self.path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def size(self) -> int:
        try:
            return len(self.path.read_bytes())
        except FileNotFoundError:
            return 0

    def since(self, offset: int) -> str:
        try:
            return self.path.read_bytes()[offset:].decode(errors="replace")
        except FileNotFoundError:
            return ""


# --------------------------------------------------------------------------------------------
# avahi-daemon


_AVAHI_ESTABLISHED = re.compile(
    r'^Service "(?P<name>.*)" \((?P<path>/etc/avahi/services/[^()]+\.service)\) '
    r"successfully established\.$",
    re.M,
)
_AVAHI_CONFLICT = re.compile(
    r'^Service name conflict for "(?P<old>.*)" \((?P<path>/etc/avahi/services/[^()]+\.service)\), '
    r'retrying with "(?P<new>.*)"\.$',
    re.M,
)
_AVAHI_HOSTNAME = re.compile(r"^Server startup complete\. Host name is (?P<h>\S+?)\.?local\.", re.M)
_AVAHI_HOST_CONFLICT = re.compile(r"^Host name conflict, retrying with (?P<h>\S+)$", re.M)


@dataclass
class _AvahiService:
    name: str
    type: str
    port: int
    txt: list[str]
    subtypes: list[str]
    filename: str
    host_name: str | None = None
    domain: str | None = None
    protocol: str = "any"


class AvahiPublisher:
    """A real avahi-daemon inside a host namespace, publishing static service files.

    It runs in a private mount namespace with a tmpfs over /run (pid file, socket) and its own
    services directory bound over /etc/avahi/services; no D-Bus, no wide-area, only eth0.

    >>> pub = AvahiPublisher(lab, host); pub.add_service("Printer", "_ipp._tcp", 631)
    >>> pub.start(); pub.wait_running()
    """

    def __init__(
        self,
        lab: Lab,
        host: Host,
        *,
        host_name: str | None = None,
        extra_config: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.lab = lab
        self.host = host
        self.requested_host_name = host_name or host.name
        self.dir = Path(tempfile.mkdtemp(prefix=f"avahi-{host.name}-", dir=lab.workdir))
        self.services_dir = self.dir / "services"
        self.services_dir.mkdir()
        self.config_path = self.dir / "avahi-daemon.conf"
        self.log = _LogFile(self.dir / "avahi.log")
        self.extra_config = {k: dict(v) for k, v in (extra_config or {}).items()}
        self.services: dict[str, _AvahiService] = {}  # by requested name
        self.proc: subprocess.Popen[Any] | None = None
        self._seq = 0
        self._pending: set[str] = set()  # files not yet established since last start/reload
        self._wait_offset = 0
        self._wait_startup = False
        self._write_config()

    # -- configuration -----------------------------------------------------------------------

    def _write_config(self) -> None:
        cfg: dict[str, dict[str, str]] = {
            "server": {
                "host-name": self.requested_host_name,
                "use-ipv4": "yes",
                "use-ipv6": "yes",
                "enable-dbus": "no",
                "allow-interfaces": self.host.ifname,
                "ratelimit-interval-usec": "1000000",
                "ratelimit-burst": "1000",
            },
            "wide-area": {"enable-wide-area": "no"},
            "publish": {"publish-hinfo": "no", "publish-workstation": "no"},
            "reflector": {"enable-reflector": "no"},
        }
        for section, values in self.extra_config.items():
            cfg.setdefault(section, {}).update(values)
        lines: list[str] = []
        for section, values in cfg.items():
            lines.append(f"[{section}]")
            lines.extend(f"{k}={v}" for k, v in values.items())
            lines.append("")
        self.config_path.write_text("\n".join(lines))

    def add_service(
        self,
        name: str,
        type: str,
        port: int,
        txt: Sequence[str] = (),
        subtypes: Sequence[str] = (),
        *,
        host_name: str | None = None,
        domain: str | None = None,
        protocol: str = "any",
    ) -> str:
        """Write a static service file (a new file each time); ``reload()`` if running.

        ``subtypes`` may be given as ``"_printer"`` or ``"_printer._sub._ipp._tcp"``.
        Returns the service file name. Replacing a name removes its previous file.
        """
        if name in self.services:
            self._remove_file(self.services.pop(name))
        self._seq += 1
        filename = f"svc-{self._seq:04d}.service"
        svc = _AvahiService(
            name=name,
            type=type,
            port=port,
            txt=list(txt),
            subtypes=[s if "._sub." in s else f"{s}._sub.{type}" for s in subtypes],
            filename=filename,
            host_name=host_name,
            domain=domain,
            protocol=protocol,
        )
        (self.services_dir / filename).write_text(self._service_xml(svc), encoding="utf-8")
        self.services[name] = svc
        self._pending.add(filename)
        return filename

    def remove_service(self, name: str) -> None:
        """Delete a service file; ``reload()`` (then avahi sends goodbyes for it)."""
        self._remove_file(self.services.pop(name))

    def _remove_file(self, svc: _AvahiService) -> None:
        self._pending.discard(svc.filename)
        with contextlib.suppress(FileNotFoundError):
            (self.services_dir / svc.filename).unlink()

    @staticmethod
    def _service_xml(svc: _AvahiService) -> str:
        def el(tag: str, text: str | int) -> str:
            return f"<{tag}>{_xml_escape(str(text))}</{tag}>"

        inner = [el("type", svc.type)]
        inner += [el("subtype", s) for s in svc.subtypes]
        if svc.domain:
            inner.append(el("domain-name", svc.domain))
        if svc.host_name:
            inner.append(el("host-name", svc.host_name))
        inner.append(el("port", svc.port))
        inner += [el("txt-record", t) for t in svc.txt]
        body = "\n    ".join(inner)
        proto = _xml_escape(svc.protocol, {'"': "&quot;"})
        return (
            '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
            '<!DOCTYPE service-group SYSTEM "avahi-service.dtd">\n'
            "<service-group>\n"
            f"  {el('name', svc.name)}\n"
            f'  <service protocol="{proto}">\n'
            f"    {body}\n"
            "  </service>\n"
            "</service-group>\n"
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise LabError("avahi-daemon already running")
        # Every service file is (re)loaded at start-up.
        self._pending = {s.filename for s in self.services.values()}
        self._wait_offset = self.log.size()
        self._wait_startup = True
        script = (
            "set -e; mount -t tmpfs -o mode=0755 tmpfs /run; mkdir -p /run/avahi-daemon; "
            'mount --bind "$1" /etc/avahi/services; '
            'exec avahi-daemon -f "$2" --no-drop-root --no-chroot --no-rlimits'
        )
        logf = self.log.path.open("ab")
        try:
            self.proc = self.lab.popen(
                self.host.ns,
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "avahi-wrapper",
                str(self.services_dir),
                str(self.config_path),
                name=f"avahi-daemon@{self.host.name}",
                stdout=logf,
                stderr=subprocess.STDOUT,
            )
        finally:
            logf.close()

    def reload(self) -> None:
        """SIGHUP: re-read service files (new/changed ones are then awaited by wait_running)."""
        self._require_running()
        self._wait_offset = self.log.size()
        self._wait_startup = False
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def wait_running(self, timeout: float = 15.0) -> None:
        """Wait for start-up (after ``start``) and for every service file added since the last
        start/reload to be established (probed; announcements start then). Follows renames."""

        def check() -> bool:
            self._require_running()
            text = self.log.since(self._wait_offset)
            if self._wait_startup and not _AVAHI_HOSTNAME.search(text):
                return False
            done = {m.group("path").rsplit("/", 1)[1] for m in _AVAHI_ESTABLISHED.finditer(text)}
            return self._pending <= done

        poll_until(
            check,
            timeout,
            interval=0.05,
            message=lambda: (
                f"avahi-daemon on "
                f"{self.host.name} to establish {sorted(self._pending)}:\n{self.logs()[-3000:]}"
            ),
        )
        self._pending.clear()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (avahi sends goodbye packets) and wait for the exit."""
        return stop_gracefully(self.proc, timeout) if self.proc is not None else None

    def kill(self) -> None:
        """SIGKILL: vanish without goodbyes (for stale-record tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5.0)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _require_running(self) -> None:
        if self.proc is None:
            raise LabError("avahi-daemon not started")
        if self.proc.poll() is not None:
            raise LabError(
                f"avahi-daemon on {self.host.name} exited with {self.proc.returncode}:\n"
                f"{self.logs()[-3000:]}"
            )

    # -- what it did -------------------------------------------------------------------------

    def logs(self) -> str:
        return self.log.text()

    @property
    def host_name(self) -> str:
        """The host name avahi actually uses (after any conflict renames), without .local."""
        text = self.logs()
        # the latest start-up or conflict line wins
        events = [(m.start(), m.group("h")) for m in _AVAHI_HOSTNAME.finditer(text)]
        events += [(m.start(), m.group("h")) for m in _AVAHI_HOST_CONFLICT.finditer(text)]
        if not events:
            return self.requested_host_name
        return max(events)[1].removesuffix(".local")

    def service_name(self, name: str) -> str:
        """The instance name avahi established for the service added as ``name``
        (``"X #2"`` after a conflict)."""
        svc = self.services[name]
        current = name
        for m in _AVAHI_ESTABLISHED.finditer(self.logs()):
            if m.group("path").endswith("/" + svc.filename):
                current = m.group("name")
        return current

    def renames(self) -> list[tuple[str, str]]:
        """(old, new) instance names of every service-name conflict avahi resolved."""
        return [(m.group("old"), m.group("new")) for m in _AVAHI_CONFLICT.finditer(self.logs())]


# --------------------------------------------------------------------------------------------
# python-zeroconf publisher / browser in a host namespace


class _JsonLinesProcess:
    """A helper script in a host namespace speaking JSON lines on stdout (events) and stdin."""

    def __init__(self, lab: Lab, host: Host, script: str, config: Mapping[str, Any], name: str):
        self.lab = lab
        self.host = host
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.stderr_path = Path(
            tempfile.mkstemp(prefix=f"{name}-", suffix=".log", dir=lab.workdir)[1]
        )
        errf = self.stderr_path.open("ab")
        try:
            self.proc = lab.popen(
                host.ns,
                sys.executable,
                "-u",
                str(NETLAB_DIR / script),
                json.dumps(config),
                name=f"{name}@{host.name}",
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errf,
                cwd=str(REPO_ROOT),
            )
        finally:
            errf.close()
        self._reader = threading.Thread(target=self._read, name=f"{name}-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "text", "text": line}
            ev["t"] = time.monotonic()
            with self._cond:
                self.events.append(ev)
                self._cond.notify_all()
        with self._cond:
            self.events.append({"event": "eof", "t": time.monotonic()})
            self._cond.notify_all()

    def send(self, cmd: Mapping[str, Any]) -> None:
        stdin: IO[bytes] | None = self.proc.stdin
        assert stdin is not None
        stdin.write((json.dumps(cmd) + "\n").encode())
        stdin.flush()

    def wait_event(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, start: int = 0
    ) -> dict[str, Any]:
        """First event (from index ``start``) matching ``predicate``; raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events[start:]:
                    if predicate(ev):
                        return ev
                    if ev.get("event") in ("eof", "error"):
                        raise LabError(f"helper ended or failed: {ev}\n{self.stderr()[-3000:]}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"timed out after {timeout}s; events: {self.events[-20:]}\n"
                        f"{self.stderr()[-2000:]}"
                    )
                self._cond.wait(remaining)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                terminate(self.proc, 1.0)
        self._reader.join(5.0)
        return self.proc.returncode


def _zc_interfaces(host: Host, ip_version: str) -> list[str]:
    if ip_version == "v4":
        return [host.ipv4]
    if ip_version == "v6":
        return [host.ipv6]
    return [host.ipv4, host.ipv6]


class ZeroconfPublisher(_JsonLinesProcess):
    """python-zeroconf registering services in a host namespace (``zc_publish.py``).

    ``services``: dicts with ``name`` (instance), ``type`` (``_http._tcp``), ``port`` and
    optional ``txt`` (dict or list of ``k=v``), ``subtypes``, ``server`` (host name),
    ``addresses`` (default: the host's IPv4 and IPv6), ``ttl``/``other_ttl``.
    SIGTERM (``stop``) unregisters them, which sends goodbyes.
    """

    def __init__(
        self,
        lab: Lab,
        host: Host,
        services: Sequence[Mapping[str, Any]],
        *,
        ip_version: str = "all",
        host_name: str | None = None,
        allow_name_change: bool = True,
    ) -> None:
        config = {
            "interfaces": _zc_interfaces(host, ip_version),
            "ip_version": ip_version,
            "host_name": host_name or host.name,
            "addresses": [host.ipv4, host.ipv6],
            "allow_name_change": allow_name_change,
            "services": list(services),
        }
        super().__init__(lab, host, "zc_publish.py", config, "zc-publish")
        self.names: list[str] = []

    def wait_ready(self, timeout: float = 15.0) -> list[str]:
        """Wait until every service is registered; returns their full names."""
        ev = self.wait_event(lambda e: e.get("event") == "ready", timeout)
        self.names = list(ev["names"])
        return self.names

    def register(self, service: Mapping[str, Any], timeout: float = 15.0) -> str:
        start = len(self.events)
        self.send({"op": "register", "service": dict(service)})
        ev = self.wait_event(lambda e: e.get("event") in ("registered", "failed"), timeout, start)
        if ev["event"] == "failed":
            raise LabError(f"registration failed: {ev}")
        return str(ev["name"])

    def update(self, service: Mapping[str, Any], timeout: float = 15.0) -> str:
        start = len(self.events)
        self.send({"op": "update", "service": dict(service)})
        ev = self.wait_event(lambda e: e.get("event") in ("updated", "failed"), timeout, start)
        if ev["event"] == "failed":
            raise LabError(f"update failed: {ev}")
        return str(ev["name"])

    def unregister(self, name: str, timeout: float = 15.0) -> None:
        """Unregister (goodbye) the service with instance or full name ``name``."""
        start = len(self.events)
        self.send({"op": "unregister", "name": name})
        ev = self.wait_event(lambda e: e.get("event") in ("unregistered", "failed"), timeout, start)
        if ev["event"] == "failed":
            raise LabError(f"unregister failed: {ev}")


class ZeroconfBrowser(_JsonLinesProcess):
    """python-zeroconf ServiceBrowser in a host namespace (``zc_browse.py``).

    Events (dicts): ``{"event": "added"|"removed"|"updated", "type", "name"}`` and, after each
    added/updated, ``{"event": "resolved", "type", "name", "server", "port", "addresses",
    "txt"}`` (``"unresolved"`` if resolution timed out). ``ip_version``: v4, v6 or all.
    """

    def __init__(self, lab: Lab, host: Host, types: Sequence[str], *, ip_version: str = "v4"):
        config = {
            "interfaces": _zc_interfaces(host, ip_version),
            "ip_version": ip_version,
            "types": list(types),
        }
        super().__init__(lab, host, "zc_browse.py", config, "zc-browse")

    def wait_started(self, timeout: float = 15.0) -> None:
        self.wait_event(lambda e: e.get("event") == "started", timeout)

    @staticmethod
    def _match(ev: dict[str, Any], kind: str, instance: str) -> bool:
        return ev.get("event") == kind and str(ev.get("name", "")).startswith(instance + ".")

    def wait_resolved(self, instance: str, timeout: float = 10.0, start: int = 0) -> dict[str, Any]:
        """First ``resolved`` event of the service whose instance name is ``instance``."""
        return self.wait_event(lambda e: self._match(e, "resolved", instance), timeout, start)

    def wait_added(self, instance: str, timeout: float = 10.0, start: int = 0) -> dict[str, Any]:
        return self.wait_event(lambda e: self._match(e, "added", instance), timeout, start)

    def wait_removed(self, instance: str, timeout: float = 10.0, start: int = 0) -> dict[str, Any]:
        return self.wait_event(lambda e: self._match(e, "removed", instance), timeout, start)

    def seen(self, instance: str) -> bool:
        with self._cond:
            return any(self._match(e, "added", instance) for e in self.events)

    def present(self) -> set[str]:
        """Full names currently present (added and not removed since)."""
        names: set[str] = set()
        with self._cond:
            for e in self.events:
                if e.get("event") == "added":
                    names.add(e["name"])
                elif e.get("event") == "removed":
                    names.discard(e["name"])
        return names


# --------------------------------------------------------------------------------------------
# the gateway under test


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def view_port(index: int) -> int:
    """Port of the per-view listener of the ``index``-th VLAN (0-based): 5310, 5320, ..."""
    return 5300 + 10 * (index + 1)


def gateway_config(lab: Lab, **overrides: Any) -> dict[str, Any]:
    """The gateway YAML config (as a dict) for the lab's VLANs; ``overrides`` are deep-merged.

    ``dns.listen``: 127.0.0.1:5300 plus 10.N.0.1:5300 and [fd00:N::1]:5300 per VLAN;
    ``dns.view_listeners``: ``{vlan: ["127.0.0.1:53X0"]}`` with 5310, 5320, ... in VLAN order.
    Pass ``None`` as a value to delete a key after merging is not supported; overwrite instead.
    """
    vlans = {
        v.name: {"interface": v.bridge, "domain": f"{v.name}.home.arpa."}
        for v in lab.vlans.values()
    }
    listen = ["127.0.0.1:5300"]
    for v in lab.vlans.values():
        listen += [f"{v.ipv4}:5300", f"[{v.ipv6}]:5300"]
    cfg: dict[str, Any] = {
        "vlans": vlans,
        "dns": {
            "listen": listen,
            "view_listeners": {
                v.name: [f"127.0.0.1:{view_port(i)}"] for i, v in enumerate(lab.vlans.values())
            },
            "browse_domain": "home.arpa.",
        },
    }
    return _deep_merge(cfg, overrides)


def _host_port(text: str, port: int) -> tuple[str, int]:
    """HOST[:PORT] as the gateway's config reads it (``[v6]:PORT`` for IPv6 with a port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else port
    if text.count(":") == 1:
        host, _, p = text.partition(":")
        return host, int(p)
    return text, port


class GatewayProcess:
    """``python -m bridge run --config <file> --log-level debug`` in the router namespace.

    stdout and stderr go to ``log_path`` (``logs()``). ``command`` replaces the argv (for
    harness self-tests); ``{config}`` in it is replaced by the config path.
    """

    def __init__(
        self,
        lab: Lab,
        config: Mapping[str, Any],
        *,
        ns: str | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_level: str = "debug",
        command: Sequence[str] | None = None,
    ) -> None:
        import yaml  # PyYAML is a runtime dependency of the gateway

        self.lab = lab
        self.ns = ns or lab.gw
        self.dir = Path(tempfile.mkdtemp(prefix="gateway-", dir=lab.workdir))
        self.config_path = self.dir / "config.yaml"
        self.config_path.write_text(
            yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)
        )
        self.log_path = self.dir / "gateway.log"
        self.config = dict(config)
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.log_level = log_level
        self.command = list(command) if command is not None else None
        self.proc: subprocess.Popen[Any] | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        logf = self.log_path.open("ab")
        try:
            argv = [
                sys.executable, "-m", "bridge", "run", "--config", str(self.config_path),
                "--log-level", self.log_level, *self.extra_args,
            ]  # fmt: skip
            if self.command is not None:
                argv = [c.replace("{config}", str(self.config_path)) for c in self.command]
            self.proc = self.lab.popen(
                self.ns,
                *argv,
                name="gateway",
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=str(REPO_ROOT),
                env=env,
            )
        finally:
            logf.close()

    def wait_ready(
        self, addr: str = "127.0.0.1", port: int = 5300, timeout: float = 15.0, http: bool = True
    ) -> None:
        """Poll with ``. IN NS`` over UDP until any reply with our ID arrives, then (``http``)
        until the HTTP surface accepts a connection: the gateway starts it last, after DNS
        answers, so once it accepts every component is up and /readyz says so."""
        deadline = time.monotonic() + timeout
        self._wait_dns(addr, port, timeout, deadline)
        where = self.http_address() if http else None
        if where is not None:
            self._wait_http(*where, deadline)

    def http_address(self) -> tuple[str, int] | None:
        """Where the gateway's HTTP surface listens (``--http-listen``, else ``http.listen``,
        else the default), as an address to connect to; None when HTTP is off."""
        listen: Any = "127.0.0.1:9353"  # the gateway's default (HTTP_DEFAULT_PORT)
        http = self.config.get("http")
        if isinstance(http, Mapping) and "listen" in http:
            listen = http["listen"]
        if listen is None or listen is False:
            return None
        host, port = _host_port(str(listen), 9353)
        argv = [*(self.command or ()), *self.extra_args]
        if "--http-listen" in argv[:-1]:  # the last one; a bare host keeps the config's port
            host, port = _host_port(argv[len(argv) - argv[::-1].index("--http-listen")], port)
        return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host), port

    def _wait_http(self, addr: str, port: int, deadline: float) -> None:
        family, sockaddr = _sockaddr(self.ns, addr, port)

        def accepted() -> bool:
            with netns_socket(self.ns, family, socket.SOCK_STREAM) as sock:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                sock.connect(sockaddr)
            return True

        self._until(accepted, deadline, f"gateway answers DNS but not HTTP on {addr}:{port}")

    def _wait_dns(self, addr: str, port: int, timeout: float, deadline: float) -> None:
        family, sockaddr = _sockaddr(self.ns, addr, port)

        def answered() -> bool:
            qid = random.randrange(65536)
            sock.send(dns.message.make_query(".", "NS", id=qid).to_wire())
            end = min(deadline, time.monotonic() + 0.2)
            while (remaining := end - time.monotonic()) > 0:
                sock.settimeout(remaining)
                data = sock.recv(65535)
                if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == qid:
                    return True
            return False

        with netns_socket(self.ns, family, socket.SOCK_DGRAM) as sock:
            sock.connect(sockaddr)
            self._until(
                answered, deadline, f"gateway not answering on {addr}:{port} after {timeout}s"
            )

    def _until(self, attempt: Callable[[], bool], deadline: float, what: str) -> None:
        """``attempt`` every 50 ms until it says True (refused or timed out: not yet) while
        the gateway runs; TimeoutError with ``what`` and the log's tail at ``deadline``."""
        while True:
            self._require_running()
            try:
                if attempt():
                    return
            except (TimeoutError, ConnectionRefusedError):
                pass
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{what}:\n{self.logs()[-4000:]}")
            time.sleep(0.05)

    def _require_running(self) -> None:
        if self.proc is None:
            raise LabError("gateway not started")
        if self.proc.poll() is not None:
            raise LabError(f"gateway exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self._require_running()
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` (then SIGKILL); returns the exit code."""
        return stop_gracefully(self.proc, timeout) if self.proc is not None else None

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Poll the log until regex ``pattern`` matches; returns the match."""
        rx = re.compile(pattern, re.M)

        def found() -> re.Match[str] | None:
            return rx.search(self.logs())

        def why() -> str:  # a timeout says what the process did log
            tail = "\n".join(self.logs().splitlines()[-20:])
            return f"log to match {pattern!r}; its last lines:\n{tail}"

        match: re.Match[str] = poll_until(found, timeout, message=why)
        return match

    def __enter__(self) -> GatewayProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def gateway_ready(lab: Lab, config: Mapping[str, Any], **options: Any) -> Iterator[GatewayProcess]:
    """A :class:`GatewayProcess` (``options`` as its) started and answering DNS and HTTP
    (``wait_ready``), stopped on exit: a lab fixture's gateway."""
    with GatewayProcess(lab, config, **options) as gw:
        gw.wait_ready()
        yield gw


@contextlib.contextmanager
def lab_context(vlans: Mapping[str, int], hosts_per_vlan: int = 0) -> Iterator[Lab]:
    """``Lab`` with ``hosts_per_vlan`` hosts on each VLAN, IPv6 settled; closed on exit."""
    lab = Lab(vlans)
    try:
        for vlan in vlans:
            for _ in range(hosts_per_vlan):
                lab.add_host(vlan)
        lab.wait_ipv6_ready()
        yield lab
    finally:
        lab.close()
