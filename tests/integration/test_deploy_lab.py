"""The gateway as the three-VLAN-router overlay's DaemonSet runs it, in the lab's router.

The container's own arguments and the ConfigMap's config (written as the kubelet writes a
ConfigMap volume) run in the router namespace with every capability dropped (setpriv: empty
bounding, inheritable and ambient sets, no new privileges), as the DaemonSet's security
context drops them; its uid stays 0 only because this machine's Python lives under /root
(mode 700), and uid 0 without capabilities has no privilege over sockets or ports. The
kubelet's probes and Prometheus reach HTTP on the node's address (--http-listen $(HOST_IP),
here the router's trusted address), and CoreDNS's blocks from ``mdns-gateway corefile``,
written in the router namespace from its real interfaces, forward to where it answers.

The policies are the overlay's three ServicePolicy objects, served by the stand-in API
server of tests/support/kubeapi.py (no real one can run here) in the router namespace; the
config gains only ``kubeconfig:`` pointing at it, as the service account's in-cluster token
(/var/run/secrets/kubernetes.io/serviceaccount) cannot be given to a process here. Every
request the gateway makes is checked against the base's Role (the verbs the API server's
authorizer would derive from it).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import pytest
import yaml

from netlab.coredns_forward import ForwardClient
from netlab.lab import GatewayProcess, Lab, ZeroconfPublisher, netns_socket, poll_until
from tests.support.cli import run_module
from tests.support.deploy import args, configmap_volume, one, rendered
from tests.support.kubeapi import KubeApi, KubeApiThread, write_kubeconfig

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

BUILD = "three-vlan-router"
SETPRIV = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all",
           "--no-new-privs", "--"]  # fmt: skip


TOKEN = "deploy-lab-token-0123456789"  # the HTTP surface's bearer token (http.token_file)


def _http_get(lab: Lab, host: str, port: int, path: str, token: str = "") -> tuple[int, str]:
    """One HTTP/1.1 GET from the router namespace (as the kubelet probes): (status, body)."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    with lab.socket(lab.gw, socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect((host, port))
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


def _probe(lab: Lab, host: str, port: int, path: str) -> int:
    """The status of one probe; 0 while nothing listens yet."""
    try:
        return _http_get(lab, host, port, path)[0]
    except ConnectionRefusedError:
        return 0


def _capabilities(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Cap"):
            fields[key] = int(value.strip(), 16)
    return fields


def _role_allows(method: str, path: str, query: dict[str, str]) -> bool:
    """Whether the base's Role lets this request through (RBAC's verb for each request:
    GET of a collection is list, or watch with ?watch; GET of one object is get)."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"]:
        group, rest = parts[1], parts[3:]
    else:
        return False
    if rest[:2] != ["namespaces", "mdns-gateway"]:  # a Role: its own namespace only
        return False
    rest = rest[2:]
    resource = "/".join([rest[0], *rest[2:3]])
    named = len(rest) >= 2
    verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method)
    if method == "GET":
        verb = "get" if named else ("watch" if query.get("watch") in ("1", "true") else "list")
    for rule in one("base", "Role")["rules"]:
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
            return True
    return False


def _forward_targets(text: str) -> dict[str, tuple[str, int]]:
    """VLAN -> the (host, port) its Corefile block forwards to (the block's comment names it)."""
    out: dict[str, tuple[str, int]] = {}
    vlan = ""
    for line in text.splitlines():
        if line.startswith("# VLAN "):
            vlan = line.split()[2]
        elif line.strip().startswith("forward . ") and vlan:
            host, port = line.split()[2].rsplit(":", 1)
            out[vlan] = (host, int(port))
            vlan = ""
    return out


def test_the_daemonsets_gateway_runs_unprivileged_and_answers_through_coredns(
    lab: Lab, tmp_path: Path
) -> None:
    def in_router() -> socket.socket:
        return netns_socket(lab.gw, socket.AF_INET, socket.SOCK_STREAM)

    with KubeApiThread(KubeApi(make_socket=in_router)) as api:
        policies = [o for o in rendered(BUILD) if o["kind"] == "ServicePolicy"]
        for obj in policies:
            api.call(api.api.put, obj)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{api.api.port}")
        path = configmap_volume(BUILD, tmp_path)
        cfg: dict[str, Any] = yaml.safe_load(path.read_text())
        assert cfg["policies"] == {"kubernetes": {"namespace": "mdns-gateway"}}
        cfg["policies"]["kubernetes"]["kubeconfig"] = str(kubeconfig)
        # off loopback every page but the probes needs a bearer token (README "Web page"):
        # the scrape brings one, as a Prometheus with authorization.credentials_file would
        (tmp_path / "http-token").write_text(TOKEN + "\n")
        cfg.setdefault("http", {})["token_file"] = str(tmp_path / "http-token")
        (path.parent / "..data" / "config.yaml").write_text(yaml.safe_dump(cfg))
        _run_as_the_daemonset(lab, path)
        for obj in policies:  # its own status entry, under its NODE_NAME
            name = obj["metadata"]["name"]
            entry = api.call(api.api.gateway_entry, "mdns-gateway", name, "router1")
            assert entry is not None and entry["conditions"][0]["type"] == "Accepted"
            assert entry["conditions"][0]["status"] == "True", entry
        requests = api.call(lambda: list(api.api.requests))
        assert len(requests) >= 2  # the list and the watch at least
        denied = [r for r in requests if not _role_allows(*r)]
        assert denied == [], denied


def _run_as_the_daemonset(lab: Lab, path: Path) -> None:
    node = lab.vlans["trusted"].ipv4  # the node's address: the kubelet's status.hostIP
    argv = [a.replace("$(HOST_IP)", node) for a in args(BUILD)]
    argv[argv.index("--config") + 1] = str(path)
    env = {e["name"]: e for e in one(BUILD, "DaemonSet")["spec"]["template"]["spec"]
           ["containers"][0]["env"]}  # fmt: skip
    assert set(env) == {"NODE_NAME", "HOST_IP"}
    gw = GatewayProcess(
        lab,
        {},
        command=[*SETPRIV, sys.executable, "-m", "bridge", *argv],
        env={"NODE_NAME": "router1", "HOST_IP": node},
    )
    with gw:
        gw.wait_ready()
        assert gw.proc is not None
        caps = _capabilities(gw.proc.pid)
        assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == 0, caps

        # the kubelet's probes and a Prometheus scrape, on the node's address
        http_port = int(one(BUILD, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
                        ["ports"][0]["containerPort"])  # fmt: skip
        # as the kubelet does: probe until it answers (HTTP starts after DNS)
        for probe in ("/healthz", "/readyz"):
            poll_until(lambda p=probe: _probe(lab, node, http_port, p) == 200, 15, message=probe)
        assert _http_get(lab, node, http_port, "/metrics")[0] == 401
        status, body = _http_get(lab, node, http_port, "/metrics", TOKEN)
        assert status == 200 and "mdns_gateway_build_info" in body

        # CoreDNS's blocks, written on the router from its interfaces
        res = run_module("corefile", "--config", str(path), ns=lab.gw)
        assert res.returncode == 0, res.stderr
        assert f"bind {node} {lab.vlans['trusted'].ipv6}\n" in res.stdout
        targets = _forward_targets(res.stdout)
        assert set(targets) == {"trusted", "iot", "guest"}

        host = lab.hosts_in("trusted")[0]
        pub = ZeroconfPublisher(
            lab, host, [{"name": "Deploy Check", "type": "_http._tcp", "port": 8080}]
        )
        pub.wait_ready()
        factory = lab.socket_factory(lab.gw)
        question = dns.message.make_query("_http._tcp.trusted.home.arpa.", "PTR")

        def instances(vlan: str) -> set[str]:
            h, p = targets[vlan]
            with ForwardClient(h, p, socket_factory=factory) as fwd:
                reply = fwd.exchange(question)
            return {str(rd.target) for rrset in reply.answer for rd in rrset}

        want = "Deploy\\032Check._http._tcp.trusted.home.arpa."
        poll_until(lambda: want in instances("trusted"), 15, message=f"{want} via trusted")
        # guests see nothing of the trusted VLAN: no policy lets them
        with ForwardClient(*targets["guest"], socket_factory=factory) as fwd:
            reply = fwd.exchange(question)
        assert not reply.answer and reply.rcode() in (dns.rcode.NXDOMAIN, dns.rcode.NOERROR)
        pub.stop()

        # the overlay's policies, from the API: trusted sees the IoT VLAN's printers, guests
        # only one named "Guest Printer*"
        printer = lab.hosts_in("iot")[0]
        pub = ZeroconfPublisher(
            lab, printer, [{"name": "Deploy Printer", "type": "_ipp._tcp", "port": 631}]
        )
        pub.wait_ready()
        question = dns.message.make_query("_ipp._tcp.iot.home.arpa.", "PTR")
        want = "Deploy\\032Printer._ipp._tcp.iot.home.arpa."
        poll_until(lambda: want in instances("trusted"), 15, message=f"{want} via trusted")
        assert want not in instances("guest")
        pub.stop()
    assert gw.proc is not None and gw.proc.returncode == 0, gw.logs()[-3000:]
