"""Policies from the Kubernetes API in the namespace lab: the real gateway, real avahi, real dig.

The API server is the stand-in of tests/support/kubeapi.py (no real one can run here; its
docstring lists the API behaviours it reproduces), served from this process on a socket made
in the router namespace, so the gateway reaches it at 127.0.0.1 as a pod reaches its API.
An avahi-daemon on iot1 publishes a printer and a TV; the trusted VLAN sees them only as the
ServicePolicy objects allow, which the tests add, modify and delete on the stand-in.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from netlab.lab import (
    AvahiPublisher,
    GatewayProcess,
    Lab,
    gateway_config,
    netns_socket,
    parse_dig,
    poll_until,
)
from tests.support.kubeapi import KubeApi, KubeApiThread, write_kubeconfig

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

NS = "mdns-gateway"
TRUSTED_PORT = 5310  # the trusted view's listener (gateway_config: VLANs in order)
ROUTER_PORT = 5390  # the router's own view "*": sees every VLAN (the cache is warm)
HTTP_PORT = 9353
CHANGE_DEADLINE = 2.0  # s; issue 15: a change applies within 2 s
PRINTER = r"Lab\032Printer._ipp._tcp.local."
TV = r"Lab\032TV._googlecast._tcp.local."


def policy(name: str, **spec: Any) -> dict[str, Any]:
    body = {"from": ["iot"], "to": ["trusted"], "services": ["_ipp._tcp"], **spec}
    return {
        "apiVersion": "mdnsgateway.io/v1alpha1",
        "kind": "ServicePolicy",
        "metadata": {"name": name, "namespace": NS},
        "spec": body,
    }


class World:
    def __init__(self, lab: Lab, api: KubeApiThread, kubeconfig: str) -> None:
        self.lab = lab
        self.api = api
        self.kubeconfig = kubeconfig

    def gateway(self, node: str, port: int = 5300, http: bool = True) -> GatewayProcess:
        cfg = gateway_config(
            self.lab,
            policies={"kubernetes": {"namespace": NS, "kubeconfig": self.kubeconfig}},
        )
        if port == 5300:
            cfg["dns"]["view_listeners"]["*"] = [f"127.0.0.1:{ROUTER_PORT}"]
        else:  # a second gateway beside the first (another router node): its own ports
            cfg["dns"] = {"listen": [f"127.0.0.1:{port}"], "default_view": "*"}
        cfg["http"] = {"listen": f"127.0.0.1:{HTTP_PORT}"} if http else {"listen": None}
        gw = GatewayProcess(self.lab, cfg, env={"NODE_NAME": node}, log_level="info")
        gw.start()
        gw.wait_ready(port=port)
        return gw

    def ptr(self, port: int, name: str) -> list[str]:
        """The PTR targets a real dig gets from the gateway's listener on ``port``."""
        out = self.lab.dig(self.lab.gw, "@127.0.0.1", "-p", str(port), name, "PTR",
                           time_s=2, tries=1)  # fmt: skip
        res = parse_dig(out)
        assert res.status in ("NOERROR", "NXDOMAIN"), out
        return [r.rdata for r in res.answer if r.rdtype == "PTR"]

    def trusted_sees(self) -> set[str]:
        return {
            t
            for stype in ("_ipp._tcp", "_googlecast._tcp")
            for t in self.ptr(TRUSTED_PORT, f"{stype}.local.")
        }

    def warm(self) -> None:
        """The router's view sees both services: the cache holds them, whatever the policy."""

        def both() -> bool:
            got = set(self.ptr(ROUTER_PORT, "_ipp._tcp.local.")) | set(
                self.ptr(ROUTER_PORT, "_googlecast._tcp.local.")
            )
            return {PRINTER, TV} <= got

        poll_until(both, timeout=30, interval=0.2, message="the cache to hold the services")

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.api.call(fn, *args)

    def clear(self) -> None:
        for key in list(self.call(lambda: list(self.api.api.objects))):
            self.call(self.api.api.delete, *key)


def readyz(lab: Lab) -> tuple[int, dict[str, Any]]:
    """GET /readyz: (status, body). The HTTP listener binds just after DNS answers (what
    wait_ready waits for), so a refused connection is tried again for a while."""

    def get() -> tuple[int, dict[str, Any]] | None:
        sock = netns_socket(lab.gw, socket.AF_INET, socket.SOCK_STREAM)
        with sock:
            sock.settimeout(5)
            try:
                sock.connect(("127.0.0.1", HTTP_PORT))
            except ConnectionRefusedError:
                return None
            sock.sendall(b"GET /readyz HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)

    result: tuple[int, dict[str, Any]] = poll_until(get, timeout=10, message="HTTP on /readyz")
    return result


def within(check: Callable[[], bool], what: str, timeout: float = CHANGE_DEADLINE) -> None:
    poll_until(check, timeout=timeout, interval=0.05, message=what)


@pytest.fixture(scope="module")
def world(lab: Lab) -> Iterator[World]:
    pub = AvahiPublisher(lab, lab.hosts["iot1"], host_name="labdev")
    pub.add_service("Lab Printer", "_ipp._tcp", 631, ["rp=ipp/print"])
    pub.add_service("Lab TV", "_googlecast._tcp", 8009, ["fn=Lab TV"])
    pub.start()
    pub.wait_running()

    def in_router() -> socket.socket:
        return netns_socket(lab.gw, socket.AF_INET, socket.SOCK_STREAM)

    with KubeApiThread(KubeApi(bookmark_interval=1.0, make_socket=in_router)) as api:
        server = f"http://127.0.0.1:{api.api.port}"
        kubeconfig = write_kubeconfig(lab.workdir / "kubeconfig", server)
        yield World(lab, api, str(kubeconfig))
    pub.stop()


def test_api_down_at_start_default_policy_not_ready_then_up(world: World) -> None:
    world.clear()
    world.call(world.api.api.put, policy("printers"))
    world.api.run(world.api.api.stop())
    try:
        gw = world.gateway("router-a")
        status, body = readyz(world.lab)
        assert status == 503 and body["ready"] is False
        assert "waiting for the first list of ServicePolicy objects" in body["reason"]
        assert "the default policy is in force" in body["reason"]
        world.warm()
        assert world.trusted_sees() == set()  # the default: trusted sees only trusted
    finally:
        world.api.run(world.api.api.start())
    within(lambda: world.trusted_sees() == {PRINTER}, "the policy once the API is up", 40)
    # ready once both lists (ServicePolicy and ServiceAnnouncement) have arrived: the two
    # resources are followed apart, each with its own backoff, so the second may come later
    within(lambda: readyz(world.lab) == (200, {"ready": True}), "ready once the API is up", 40)
    assert gw.proc is not None and gw.proc.poll() is None


@pytest.fixture
def gateway_a(world: World) -> GatewayProcess:
    world.clear()
    gw = world.gateway("router-a")
    poll_until(lambda: readyz(world.lab)[0] == 200, timeout=20, message="the first list")
    world.warm()
    return gw


def test_objects_added_modified_deleted_change_answers_within_2s(
    world: World, gateway_a: GatewayProcess
) -> None:
    assert world.trusted_sees() == set()
    world.call(world.api.api.put, policy("iot-to-trusted"))
    within(lambda: world.trusted_sees() == {PRINTER}, "the added policy")
    world.call(world.api.api.put, policy("iot-to-trusted", services=["_googlecast._tcp"]))
    within(lambda: world.trusted_sees() == {TV}, "the modified policy")
    world.call(world.api.api.delete, NS, "iot-to-trusted")
    within(lambda: world.trusted_sees() == set(), "the deleted policy")


def test_a_dropped_watch_resumes_without_relist_and_410_relists(
    world: World, gateway_a: GatewayProcess
) -> None:
    api = world.api.api
    lists = world.call(api.list_requests)
    world.call(api.drop_watches)
    world.call(api.put, policy("printers"))
    within(lambda: world.trusted_sees() == {PRINTER}, "a change after the dropped watch")
    assert world.call(api.list_requests) == lists  # resumed from the last version: no list

    def gap() -> None:  # the watch away, a change, and the history compacted behind it
        api.drop_watches()
        api.put(policy("printers", services=["_ipp._tcp", "_googlecast._tcp"]))
        api.compact()

    world.call(gap)
    within(lambda: world.trusted_sees() == {PRINTER, TV}, "the change the relist brings", 10)
    assert world.call(api.list_requests) == lists + 1


def test_invalid_object_rejected_alone_and_two_gateways_keep_their_entries(
    world: World, gateway_a: GatewayProcess
) -> None:
    api = world.api.api
    world.gateway("router-b", port=5301, http=False)
    world.call(api.put, policy("printers"))
    world.call(api.put, policy("cast", services=["_googlecast._tcp"], **{"from": ["iot", "lab"]}))
    within(lambda: world.trusted_sees() == {PRINTER}, "the valid policy", 10)

    def entries(name: str) -> dict[str, dict[str, Any]]:
        obj = world.call(lambda: api.objects.get((NS, name)))
        gateways = (obj or {}).get("status", {}).get("gateways", [])
        return {e["nodeName"]: e["conditions"][0] for e in gateways}

    poll_until(lambda: set(entries("cast")) == {"router-a", "router-b"}, timeout=10,
               message="both gateways' entries")  # fmt: skip
    for node, cond in entries("cast").items():
        assert (cond["status"], cond["reason"]) == ("False", "Invalid"), node
        assert cond["message"].startswith("spec.from[1]: unknown VLAN 'lab'"), cond
        assert cond["observedGeneration"] == 1
    poll_until(lambda: set(entries("printers")) == {"router-a", "router-b"}, timeout=10,
               message="both entries on printers")  # fmt: skip
    assert all(c["status"] == "True" for c in entries("printers").values())

    def events() -> list[dict[str, Any]]:
        return world.call(
            lambda: [e for e in api.posted_events if e["involvedObject"]["name"] == "cast"]
        )

    poll_until(lambda: len(events()) == 2, timeout=10, message="one Event per gateway")
    assert {e["source"]["host"] for e in events()} == {"router-a", "router-b"}
    assert all(e["type"] == "Warning" and "spec.from[1]" in e["message"] for e in events())
