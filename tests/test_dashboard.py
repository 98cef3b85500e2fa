"""deploy/grafana/mdns-gateway.json: a dashboard any Grafana imports (a datasource variable, no
datasource UID of ours), every panel with a query, and every query reading only metrics a
running gateway serves."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.cli import ROOT
from tests.support.exposition import names_read, running_gateway, served_names

DASHBOARD = ROOT / "deploy" / "grafana" / "mdns-gateway.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# what the issue asks the dashboard to show: a metric each group of panels must read
SHOWN = {
    "DNS queries": "mdns_gateway_dns_queries_total",
    "DNS cache hits": "mdns_gateway_dns_cache_hits_total",
    "mDNS packets per VLAN": "mdns_gateway_mdns_packets_received_total",
    "mDNS drops per VLAN": "mdns_gateway_mdns_packets_dropped_total",
    "store size": "mdns_gateway_store_records",
    "store refusals": "mdns_gateway_store_refused_records_total",
    "reflector per direction": "mdns_gateway_reflector_packets_total",
    "chrony offset": "mdns_gateway_chrony_offset_seconds",
    "chrony stratum": "mdns_gateway_chrony_stratum",
    "NTP advertised": "mdns_gateway_chrony_advertised",
    "record-guard refusals": "mdns_gateway_mdns_records_refused_total",
    "TCP limits": "mdns_gateway_dns_tcp_connections_closed_total",
    "another reflector": "mdns_gateway_reflector_loops_detected_total",
    "Kubernetes source synced": "mdns_gateway_kube_synced",
    "Kubernetes relists": "mdns_gateway_kube_relists_total",
    "Kubernetes objects rejected": "mdns_gateway_kube_objects",
}


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def variable_queries() -> list[str]:
    """The PromQL inside the query variables' ``label_values(expr, label)``."""
    out = []
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", var["query"]["query"])
            assert m is not None, var
            out.append(m.group(1))
    return out


def exprs() -> list[str]:
    return [t["expr"] for p in panels() for t in p["targets"]] + variable_queries()


def test_the_dashboard_has_a_prometheus_datasource_variable_and_no_fixed_uid() -> None:
    dash = dashboard()
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE, var["name"]
    # any datasource reference anywhere is the variable (or Grafana's built-in annotations)
    refs = re.findall(r'"uid": "([^"]*)"', DASHBOARD.read_text())
    assert set(refs) <= {"${datasource}", "-- Grafana --", dash["uid"]}


def test_every_panel_has_a_query_through_the_variable() -> None:
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    assert len(panels()) >= 20
    for panel in panels():
        assert panel["title"] and panel["description"], panel["id"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip() and names_read(target["expr"]), panel["title"]
        pos = panel["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    read = set().union(*(names_read(e) for e in exprs()))
    missing = {what: name for what, name in SHOWN.items() if name not in read}
    assert missing == {}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """Names a gateway serves with a policies directory, and with policies from Kubernetes
    (the ``mdns_gateway_kube_*`` families exist only then; the two sources exclude each other)."""
    with running_gateway(tmp_path_factory.mktemp("gateway")) as text:
        names = served_names(text)
    with running_gateway(tmp_path_factory.mktemp("gateway"), kubernetes=True) as text:
        yield names | served_names(text)


def test_every_query_reads_only_metrics_the_gateway_serves(served: set[str]) -> None:
    unknown = {e: sorted(names_read(e) - served) for e in exprs() if names_read(e) - served}
    assert unknown == {}, unknown
