"""The ``wide_area:`` section and its TSIG key file: each problem names the file, the key and
the fix; the secret is read in BIND's, Knot's or bare base64 form."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import dns.name
import pytest

from bridge.config import ConfigError, from_dict
from bridge.widearea import tsigkey
from tests.support.widearea import B64, BIND, KNOT, SECRET


def cfg(tmp_path: Path, content: str = BIND, mode: int = 0o600, **over: Any) -> dict[str, Any]:
    key = tmp_path / "tsig.key"
    key.write_text(content)
    os.chmod(key, mode)
    wide: dict[str, Any] = {
        "server": "192.0.2.53:53",
        "zone": "dnssd.example.com.",
        "tsig": {"name": "mdns-gateway.", "algorithm": "hmac-sha256", "secret_file": str(key)},
    }
    wide.update(over)
    return {"vlans": {"iot": {"interface": "br20"}}, "wide_area": wide}


@pytest.mark.parametrize("content", [BIND, KNOT, B64 + "\n"], ids=["bind", "knot", "base64"])
def test_each_key_file_form(tmp_path: Path, content: str) -> None:
    wa = from_dict(cfg(tmp_path, content), "gw.yaml").wide_area
    assert wa is not None
    assert wa.key.secret == SECRET and wa.key.name == dns.name.from_text("mdns-gateway.")
    assert wa.server == ("192.0.2.53", 53) and wa.zone == dns.name.from_text("dnssd.example.com.")
    assert (wa.ttl, wa.reconcile_interval) == (120, 600.0)
    assert B64 not in repr(wa)  # the secret stays out of logs


def test_real_tools_output_is_read(tmp_path: Path) -> None:
    """What tsig-keygen and keymgr print on this machine (when installed)."""
    import shutil
    import subprocess

    for tool in (
        ["tsig-keygen", "-a", "hmac-sha256", "mdns-gateway"],
        ["keymgr", "-t", "mdns-gateway", "hmac-sha256"],
    ):
        if shutil.which(tool[0]) is None:
            continue
        text = subprocess.run(tool, capture_output=True, text=True, check=True, timeout=30).stdout
        wa = from_dict(cfg(tmp_path, text), "gw.yaml").wide_area
        assert wa is not None and len(wa.key.secret) == 32


def problems(tmp_path: Path, **kw: Any) -> str:
    content = kw.pop("content", BIND)
    mode = kw.pop("mode", 0o600)
    with pytest.raises(ConfigError) as exc:
        from_dict(cfg(tmp_path, content, mode, **kw), "gw.yaml")
    return str(exc.value)


def test_a_world_readable_key_file_is_refused(tmp_path: Path) -> None:
    text = problems(tmp_path, mode=0o644)
    assert "gw.yaml: wide_area.tsig.secret_file:" in text and "readable by every user" in text
    assert "fix: chmod o-rwx" in text


def test_an_unreadable_key_file(tmp_path: Path) -> None:
    data = cfg(tmp_path)
    data["wide_area"]["tsig"]["secret_file"] = str(tmp_path / "missing.key")
    with pytest.raises(ConfigError) as exc:
        from_dict(data, "gw.yaml")
    assert "wide_area.tsig.secret_file: cannot read" in str(exc.value)
    assert "tsig-keygen" in str(exc.value)


def test_the_key_name_and_algorithm_must_match_the_file(tmp_path: Path) -> None:
    assert "named 'mdns-gateway', tsig.name is other." in problems(
        tmp_path, tsig={"name": "other.", "secret_file": str(tmp_path / "tsig.key")}
    )
    text = problems(
        tmp_path,
        tsig={
            "name": "mdns-gateway.",
            "algorithm": "hmac-sha512",
            "secret_file": str(tmp_path / "tsig.key"),
        },
    )
    assert "hmac-sha256, tsig.algorithm is hmac-sha512" in text


def test_bad_contents(tmp_path: Path) -> None:
    assert "not base64" in problems(tmp_path, content="not a key!\n")
    assert "16 or more" in problems(tmp_path, content=base64.b64encode(b"short").decode())
    assert "neither a tsig-keygen" in problems(tmp_path, content="a\nb\n")


def test_keys_and_values(tmp_path: Path) -> None:
    text = problems(tmp_path, server="nowhere", ttl=0, extra=1, reconcile_interval=1)
    assert "wide_area.server:" in text and "wide_area.ttl:" in text
    assert "wide_area.extra: unknown key" in text and "wide_area.reconcile_interval:" in text
    text = problems(
        tmp_path,
        tsig={
            "name": "mdns-gateway.",
            "algorithm": "hmac-md5",
            "secret_file": str(tmp_path / "tsig.key"),
        },
    )
    assert "wide_area.tsig.algorithm:" in text and "hmac-sha256" in text


def test_parse_picks_the_configured_key_of_several() -> None:
    other = (
        'key "other" { algorithm hmac-sha256; secret "'
        + base64.b64encode(b"o" * 32).decode()
        + '"; };\n'
    )
    key = tsigkey.parse(other + BIND, dns.name.from_text("mdns-gateway."), "hmac-sha256")
    assert key.secret == SECRET
