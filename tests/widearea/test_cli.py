"""``check`` and ``explain`` with a ``wide_area:`` section (the command line, in process)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import yaml

from bridge import cli
from tests.support.widearea import BIND

POLICY = """apiVersion: mdnsgateway.io/v1alpha1
kind: ServicePolicy
metadata: {name: printers-wide}
spec:
  from: [iot]
  to: [trusted]
  services: [_ipp._tcp]
  wideArea: true
"""


@pytest.fixture(autouse=True)
def _no_logging_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.logutil, "setup", lambda level, fmt="text": None)


def config(tmp_path: Path, key_mode: int = 0o600, wide: bool = True) -> Path:
    (tmp_path / "policies").mkdir(exist_ok=True)
    (tmp_path / "policies" / "wide.yaml").write_text(POLICY)
    key = tmp_path / "tsig.key"
    key.write_text(BIND)
    os.chmod(key, key_mode)
    data = {
        "vlans": {"trusted": {"interface": "br10"}, "iot": {"interface": "br20"}},
        "dns": {"default_view": "*"},
        "policies": "policies",
    }
    if wide:
        data["wide_area"] = {
            "server": "192.0.2.53:53",
            "zone": "dnssd.example.com.",
            "tsig": {"name": "mdns-gateway.", "secret_file": "tsig.key"},  # relative: to the file
        }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_check_reads_the_key_and_refuses_a_world_readable_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rc, out, err = run(capsys, "check", "-c", str(config(tmp_path)))
    assert rc == 0 and "OK" in out, err
    rc, out, err = run(capsys, "check", "-c", str(config(tmp_path, 0o644)))
    assert rc == cli.EXIT_INVALID
    assert "wide_area.tsig.secret_file" in err and "readable by every user" in err
    assert base64.b64encode(bytes(range(32))).decode() not in err  # never the secret


def test_explain_says_where_a_service_is_published(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = str(config(tmp_path))
    rc, out, _ = run(
        capsys,
        "explain",
        "-c",
        cfg,
        "--view",
        "trusted",
        "--vlan",
        "iot",
        "Office Printer._ipp._tcp",
    )
    assert rc == 0
    assert "published wide-area: yes" in out
    assert (
        "published as Office\\032Printer._ipp._tcp.iot.dnssd.example.com. "
        "(zone dnssd.example.com. on 192.0.2.53:53)" in out
    )
    rc, out, _ = run(
        capsys, "explain", "-c", cfg, "--view", "trusted", "--vlan", "iot", "_http._tcp"
    )
    assert "published wide-area: no" in out and "published as" not in out


def test_explain_without_the_section_says_nothing_is_published(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = str(config(tmp_path, wide=False))
    rc, out, _ = run(capsys, "explain", "-c", cfg, "--view", "*", "--vlan", "iot", "_ipp._tcp")
    assert rc == 0 and "no wide_area: section" in out
