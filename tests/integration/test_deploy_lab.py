"""The gateway as the three-VLAN-router overlay's DaemonSet runs it, in the lab's router.

The container's own arguments and the ConfigMap's config (written as the kubelet writes a
ConfigMap volume) run in the router namespace with every capability dropped (setpriv: empty
bounding, inheritable and ambient sets, no new privileges), as the DaemonSet's security
context drops them; its uid stays 0 only because this machine's Python lives under /root
(mode 700), and uid 0 without capabilities has no privilege over sockets or ports. The
kubelet's probes and Prometheus reach HTTP on the node's address (--http-listen $(HOST_IP),
here the router's trusted address), and CoreDNS's blocks from ``mdns-gateway corefile``,
written in the router namespace from its real interfaces, forward to where it answers.

The config's ``policies: {kubernetes: ...}`` is left out: there is no API server here (the
Kubernetes source has its own tests); without policies each VLAN sees only itself, which is
what the gateway applies until its first list of ServicePolicy objects.
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
from netlab.lab import GatewayProcess, Lab, ZeroconfPublisher, poll_until
from tests.support.cli import run_module
from tests.support.deploy import args, configmap_volume, one

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

BUILD = "three-vlan-router"
SETPRIV = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all",
           "--no-new-privs", "--"]  # fmt: skip


def _http_get(lab: Lab, host: str, port: int, path: str) -> tuple[int, str]:
    """One HTTP/1.1 GET from the router namespace (as the kubelet probes): (status, body)."""
    with lab.socket(lab.gw, socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect((host, port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


def _capabilities(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Cap"):
            fields[key] = int(value.strip(), 16)
    return fields


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
    path = configmap_volume(BUILD, tmp_path)
    cfg: dict[str, Any] = yaml.safe_load(path.read_text())
    assert cfg.pop("policies") == {"kubernetes": {"namespace": "mdns-gateway"}}
    (path.parent / "..data" / "config.yaml").write_text(yaml.safe_dump(cfg))
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
        assert _http_get(lab, node, http_port, "/healthz")[0] == 200
        status, body = poll_until(
            lambda: (r := _http_get(lab, node, http_port, "/readyz"))[0] == 200 and r,
            15,
            message="/readyz to say ready",
        )
        assert status == 200
        status, body = _http_get(lab, node, http_port, "/metrics")
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
        # guests see nothing of the trusted VLAN without a policy
        with ForwardClient(*targets["guest"], socket_factory=factory) as fwd:
            reply = fwd.exchange(question)
        assert not reply.answer and reply.rcode() in (dns.rcode.NXDOMAIN, dns.rcode.NOERROR)
        pub.stop()
    assert gw.proc is not None and gw.proc.returncode == 0, gw.logs()[-3000:]
