"""The publisher's counters reach /metrics and every wide-area metric is in the README."""

from __future__ import annotations

import os
from pathlib import Path

from bridge.app import Gateway
from bridge.config import from_dict
from tests.support.metrics import NS, documented, exported
from tests.support.widearea import BIND


def gateway(tmp_path: Path) -> Gateway:
    key = tmp_path / "tsig.key"
    key.write_text(BIND)
    os.chmod(key, 0o600)
    cfg = {
        "vlans": {"iot": {"interface": "br20"}},
        "wide_area": {
            "server": "192.0.2.53:53",
            "zone": "dnssd.example.com.",
            "tsig": {"name": "mdns-gateway.", "secret_file": str(key)},
        },
    }
    return Gateway(from_dict(cfg, "test.yaml"))


def test_every_wide_area_metric_is_in_the_readme(tmp_path: Path) -> None:
    names = exported(gateway(tmp_path).registry)
    wide = {n for n in names if n.startswith(f"{NS}widearea_")}
    assert len(wide) == 8, wide
    assert not wide - documented(), sorted(wide - documented())


def test_the_counters_are_exported(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    wa = gw.widearea
    assert wa is not None
    wa.updates["badsig"] += 2
    wa.transfers["ok"] += 3
    wa.reconciled["deleted"] += 4
    wa.last_success = 1234.0
    wa.followed.dropped += 5
    sample = gw.registry.get_sample_value
    assert sample(f"{NS}widearea_updates_total", {"result": "badsig"}) == 2
    assert sample(f"{NS}widearea_transfers_total", {"result": "ok"}) == 3
    assert sample(f"{NS}widearea_reconciled_records_total", {"action": "deleted"}) == 4
    assert sample(f"{NS}widearea_last_success_timestamp_seconds") == 1234.0
    assert sample(f"{NS}widearea_instances_dropped_total") == 5
    assert sample(f"{NS}widearea_records") == 0
