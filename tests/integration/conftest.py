"""Fixtures for the namespace VLAN lab (see netlab/lab.py).

``lab`` (module scope): VLANs trusted=10, iot=20, guest=30 with two hosts each
(``trusted1``, ``trusted2``, ``iot1``, ``iot2``, ``guest1``, ``guest2``), IPv6 settled.
Processes a test starts through the lab (publishers, browsers, gateways) are stopped when that
test ends; those started by module-scoped fixtures live until the module's lab closes.
Lab tests are skipped only when not root or ``ip netns`` is unusable.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from netlab.lab import Lab, lab_available

LAB_VLANS = {"trusted": 10, "iot": 20, "guest": 30}
HOSTS_PER_VLAN = 2


def _skip_unless_lab() -> None:
    ok, reason = lab_available()
    if not ok:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    _skip_unless_lab()
    with Lab(LAB_VLANS) as the_lab:
        for vlan in LAB_VLANS:
            for _ in range(HOSTS_PER_VLAN):
                the_lab.add_host(vlan)
        the_lab.wait_ipv6_ready()
        yield the_lab


@pytest.fixture(autouse=True)
def _stop_test_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """Stop what a test started through the module's lab once the test is over."""
    if "lab" not in request.fixturenames:
        yield
        return
    the_lab: Lab = request.getfixturevalue("lab")
    mark = the_lab.process_mark()
    yield
    the_lab.stop_processes(mark)
