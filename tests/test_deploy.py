"""The systemd unit in deploy/systemd: valid for systemd, and hardened."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "systemd" / "mdns-gateway.service"
INSTALLED = "/opt/mdns-gateway/bin/mdns-gateway"


def _unit_here(tmp_path: Path) -> Path:
    """The unit with its ExecStart pointing at this interpreter (systemd checks it exists)."""
    text = UNIT.read_text()
    assert INSTALLED in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(INSTALLED, f"{sys.executable} -m bridge"))
    return unit


def test_unit_has_the_hardening_of_a_network_daemon() -> None:
    keys = dict(
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert keys["NoNewPrivileges"] == "yes"
    assert keys["ProtectSystem"] == "strict" and keys["ProtectHome"] == "yes"
    assert keys["DynamicUser"] == "yes"
    assert keys["CapabilityBoundingSet"] == keys["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert "/etc/mdns-gateway/config.yaml" in keys["ExecStart"]
    assert keys["ExecStartPre"].split()[1:3] == ["check", "--config"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    res = subprocess.run(
        ["systemd-analyze", "verify", str(_unit_here(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (res.returncode, res.stderr) == (0, ""), res.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_rates_the_unit_exposure_low(tmp_path: Path) -> None:
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(_unit_here(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if res.returncode != 0 and "offline" in res.stderr:
        pytest.skip(f"this systemd-analyze cannot rate a unit file offline: {res.stderr.strip()}")
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", res.stdout)
    assert m is not None, res.stdout + res.stderr
    assert float(m.group(1)) <= 2.0  # systemd's scale: 0 (locked down) to 10 ("UNSAFE")
