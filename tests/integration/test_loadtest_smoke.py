"""The load test's smoke run: every phase at toy size, in seconds. No thresholds on time.

It proves the runner works end to end (lab, publishers, NSD, dnsperf, avahi, tcpdump) and
writes well-formed results; the figures come from ``python -m loadtest`` (``make bench``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.runner import Options, run_all
from netlab.lab import lab_available

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]


def test_runner_produces_wellformed_results(tmp_path: Path) -> None:
    ok, why = lab_available()
    if not ok:
        pytest.skip(why)  # like every lab test: needs root and ip netns
    res, path = run_all(Options.smoke(tmp_path))
    data = json.loads(path.read_text())
    assert data == json.loads(json.dumps(res, default=str))
    assert data["workload"]["every_name_rcodes"]["gateway"] == {
        "NOERROR": data["workload"]["names"]
    }
    for transport in ("udp", "tcp"):
        section = data[transport]
        for server in ("gateway", "nsd"):
            for run in ("max", "max_latency", "half_load"):
                r = section[server][run]
                assert r["qps"] > 0 and r["completed"] > 0, (transport, server, run, r)
            assert section[server]["max"]["cpu_us_per_query"] > 0
            assert section[server]["half_load"]["p99_ms"] is not None
        assert section["ratios"]["qps_gateway_over_nsd"] > 0
    for kind in ("A", "SRV", "PTR"):
        assert data["cold"][kind]["answered"] >= 1, data["cold"]
    step = data["memory"]["steps"][0]
    assert step["records_held"] >= step["records_expected"] > 0
    assert step["rss_mb"] > 0
    assert step["avahi_records"] >= step["records_expected"]  # avahi heard them all too
    assert step["avahi_rss_mb"] > 0
    assert data["startup"]["gateway_median_s"] > 0
    for name in ("gateway", "avahi"):
        assert set(data["idle"][name]["per_vlan"]) == {"trusted", "iot", "guest"}
    wide = data["widearea"]
    for published in wide["publish"]:
        assert published["services_published"] == published["services"] > 0, published
        assert published["records_in_zone"] > published["services"]
    assert all(q > 0 for q in wide["udp_qps"]["with"] + wide["udp_qps"]["without"])
    assert wide["gateway_counters"]["mdns_gateway_widearea_records"] > 0
    assert set(data["targets"]) >= {
        "udp_qps_ratio",
        "udp_cpu_per_query_ratio",
        "udp_p99_half_load_ms",
        "cold_A_p95_ms",
    }
    table = path.with_suffix(".md").read_text()
    assert table.startswith("# mdns-gateway load test")
    assert "UDP cached answers" in table and "TCP cached answers" in table
    assert "wide-area: UDP cached answers" in table
