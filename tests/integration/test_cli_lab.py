"""The command line inside the lab's router namespace, where the interfaces are known."""

from __future__ import annotations

import re

import pytest

from netlab.lab import lab_available, lab_context, run
from tests.support.cli import run_module


@pytest.mark.lab
def test_check_with_the_embedded_default_sees_the_namespace_interfaces() -> None:
    """In a namespace whose interfaces are known: the up multicast bridges are the VLANs,
    loopback and a down interface are not."""
    ok, reason = lab_available()
    if not ok:
        pytest.skip(reason)
    with lab_context({"trusted": 10, "iot": 20}) as lab:
        run(lab.gw, "ip", "link", "add", "down0", "type", "veth", "peer", "name", "down1")
        run(lab.gw, "ip", "addr", "add", "10.99.0.1/24", "dev", "down0")
        res = run_module("check", ns=lab.gw)
        assert res.returncode == 0, res.stderr
        m = re.fullmatch(
            r"<embedded default>: OK: 2 VLAN\(s\) \((.*)\), 0 policy resource\(s\)\n", res.stdout
        )
        assert m is not None, res.stdout
        assert sorted(m.group(1).split(", ")) == ["br10", "br20"]
        run(lab.gw, "ip", "link", "set", "down0", "up")
        res = run_module("check", ns=lab.gw)
        assert "3 VLAN(s)" in res.stdout and "down0" in res.stdout
