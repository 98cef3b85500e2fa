"""The load test's verdicts: issue 18's targets come out of a stored run's figures."""

import json
from pathlib import Path

from loadtest import report

STORED = Path(__file__).parent.parent / "loadtest" / "results" / "20261126T155232Z.json"


def _stored() -> dict:
    res: dict = json.loads(STORED.read_text())
    return res


def test_issue18_targets_of_a_stored_run() -> None:
    """The run of 2026-11-26, before issue 18's work: every one of its targets missed."""
    tg = report.targets(_stored())
    assert tg["idle_packets_ratio_vs_avahi_browse"]["value"] == 320 / 95
    assert tg["idle_packets_ratio_vs_avahi_browse"]["met"] is False
    assert tg["udp_cpu_per_query_ratio_issue18"]["met"] is False  # 5.67 vs 4.61 µs
    assert tg["udp_qps_ratio_issue18"]["met"] is False  # 0.91x
    assert tg["startup_ratio_vs_nsd"]["value"] == 0.114 / 0.057
    assert tg["startup_ratio_vs_nsd"]["met"] is False
    assert tg["rss_10k_services_every_answer_prerendered_mb"]["met"] is False  # 102.1 MB
    assert {t.get("issue", 6) for t in tg.values()} == {6, 18}


def test_targets_met_when_the_gateway_matches_its_references() -> None:
    res = _stored()
    res["idle"]["gateway"]["mean_packets_per_vlan_hour"] = 60
    res["udp"]["ratios"]["cpu_per_query_gateway_over_nsd"] = 1.0
    res["udp"]["ratios"]["qps_gateway_over_nsd"] = 1.0
    res["startup"]["gateway_median_s"] = 0.0855  # exactly 1.5x NSD's 0.057 s
    tg = report.targets(res)
    for name in (
        "idle_packets_ratio_vs_avahi_browse",
        "udp_cpu_per_query_ratio_issue18",
        "udp_qps_ratio_issue18",
        "startup_ratio_vs_nsd",
    ):
        assert tg[name]["met"] is True, name


def test_the_markdown_names_each_targets_issue() -> None:
    res = _stored()
    res["targets"] = report.targets(res)
    text = report.markdown(res)
    assert "| startup_ratio_vs_nsd | 18 | 2.00 | <= 1.5 | **no** |" in text
    assert "| udp_qps_ratio | 6 | 0.91 | >= 0.7 | yes |" in text
