"""Every counter the components keep reaches /metrics, and every metric is in the README.

A gateway with the reflector, the chrony advertiser and lease host names on is built without
starting it (no sockets); its registry is what /metrics serves.
"""

from __future__ import annotations

import socket

from prometheus_client.core import Metric

from bridge.app import Gateway
from bridge.config import from_dict
from tests.support.links import setup
from tests.support.metrics import NS, documented, exported


def gateway() -> Gateway:
    return Gateway(
        from_dict(
            {
                "vlans": {"trusted": {"interface": "br10", "domain": "trusted.home.arpa."}},
                "reflector": {"enabled": True},
                "chrony": {"servers": [{"name": "router", "control": "127.0.0.1:323"}]},
                "policies": {"kubernetes": {"namespace": "lab", "nodeName": "router-1"}},
                "dhcp": {"leases": [{"format": "kea", "path": "/nonexistent/kea-leases4.csv"}]},
            },
            "test.yaml",
        )
    )


def test_every_exported_metric_is_in_the_readme() -> None:
    missing = exported(gateway().registry) - documented()
    assert not missing, f"not in README's metrics tables: {sorted(missing)}"


def test_the_counters_kept_are_exported() -> None:
    """The counters that were kept and never exported: one scrape shows each one's value."""
    gw = gateway()
    gw.ingest.malformed[("trusted", "bad_pointer")] += 2
    gw.transport.truncated += 3
    gw.server.stats.tcp_connections += 4
    gw.memory.full_collections += 5
    gw.memory.cycles_found += 6
    gw.memory.trims += 9
    assert gw.chrony is not None
    gw.chrony.responder.dropped_answers += 7
    registry = gw.registry
    sample = registry.get_sample_value
    labels = {"vlan": "trusted", "reason": "bad_pointer"}
    assert sample(f"{NS}mdns_packets_malformed_total", labels) == 2
    assert sample(f"{NS}mdns_packets_truncated_total") == 3
    assert sample(f"{NS}dns_tcp_connections_total") == 4
    assert sample(f"{NS}memory_full_collections_total") == 5
    assert sample(f"{NS}memory_cycles_freed_total") == 6
    assert sample(f"{NS}memory_trims_total") == 9
    assert sample(f"{NS}chrony_mdns_answers_dropped_total") == 7
    # the configured bound beside the offset, for the skew alert
    assert sample(f"{NS}chrony_max_offset_seconds", {"server": "router"}) == 0.010
    gw.publisher.responder.stand_asides += 8
    assert gw.leases is not None
    gw.leases.ignored["dot"] += 9
    assert sample(f"{NS}announce_conflicts_total") == 8
    assert sample(f"{NS}dhcp_names_ignored_total", {"reason": "dot"}) == 9


def test_ingest_counts_the_parser_reason_of_a_malformed_packet() -> None:
    _, ingest, _ = setup()
    one_question = b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    for data in (one_question + b"\xc0\x0c\x00\x01\x00\x01", b"\x00" * 5):
        assert ingest.handle(data, "10.20.0.5", 5353, 9, socket.AF_INET, 0.0) is None
    assert ingest.dropped[("iot", "malformed")] == 2
    assert ingest.malformed == {("iot", "bad_pointer"): 1, ("iot", "short"): 1}


def test_a_family_built_by_the_helpers_exports_its_samples_in_order() -> None:
    """A mapping's samples come sorted by label values, pairs in their order, one value alone."""
    from bridge.metrics import counter, gauge

    def samples(family: Metric) -> list[tuple[dict[str, str], float]]:
        return [(s.labels, s.value) for s in family.samples]

    by_vlan = counter("x", "doc", {("iot", "a"): 2, ("guest", "b"): 3}, ["vlan", "kind"])
    assert samples(by_vlan) == [
        ({"vlan": "guest", "kind": "b"}, 3),
        ({"vlan": "iot", "kind": "a"}, 2),
    ]
    assert samples(counter("x", "doc", [("udp", 1), ("tcp", 2)], ["transport"])) == [
        ({"transport": "udp"}, 1),
        ({"transport": "tcp"}, 2),
    ]
    one = gauge("y", "doc", 7)
    assert (one.type, samples(one)) == ("gauge", [({}, 7)])
