"""The rtnetlink interface list (bridge/interfaces.py) in a namespace of its own with more
addresses than one read of the dump holds (const.NETLINK_RECV_BYTES), a labelled IPv4 alias
and a point-to-point peer address: the same as iproute2 reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlab.lab import lab_available, run
from tests.support.ipaddrs import ip_addresses

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]
REPO = Path(__file__).resolve().parents[2]
LISTER = (
    "import json; from bridge.interfaces import list_interfaces; print(json.dumps("
    "{i.name: [i.index, sorted(str(a) for a in i.addresses)] for i in list_interfaces()}))"
)


@pytest.fixture
def ns() -> Iterator[str]:
    ok, reason = lab_available()
    if not ok:
        pytest.skip(reason)
    name = f"mg-ifa-{os.getpid()}"
    run(None, "ip", "netns", "add", name)
    try:
        yield name
    finally:
        run(None, "ip", "netns", "del", name, check=False)


def test_many_addresses_an_alias_and_a_peer_as_iproute2_reads_them(ns: str) -> None:
    batch = ["link set lo up", "link add a0 type veth peer name a1", "link set a0 up"]
    batch += [f"address add fd00:77::{i:x}/64 dev a0 nodad" for i in range(1, 801)]
    batch += [f"address add 10.77.{i // 250}.{i % 250 + 1}/16 dev a1" for i in range(300)]
    batch += ["address add 10.78.0.1/24 dev a1 label a1:web", "link set a1 up"]
    batch += ["address add 10.79.0.1 peer 10.79.0.2/32 dev a0"]
    subprocess.run(["ip", "-n", ns, "-batch", "-"], input="\n".join(batch), text=True, check=True)
    res = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", LISTER],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=True,
    )  # fmt: skip
    ours = {k: (v[0], v[1]) for k, v in json.loads(res.stdout).items()}
    theirs = {k: (i, sorted(a)) for k, (i, a) in ip_addresses(ns).items()}
    assert ours == theirs
    assert len(ours["a0"][1]) > 800 and "10.78.0.1/24" in ours["a1:web"][1]
    assert "10.79.0.1/32" in ours["a0"][1]
