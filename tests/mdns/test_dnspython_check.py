"""The self-check of what wire.py relies on inside dnspython: it passes on the dnspython the
tests run with, which is in the range pyproject.toml pins, and it fails loudly, naming the
dnspython version, when dnspython changes under it (simulated by patching dnspython itself:
its name hash, its digestable form)."""

from __future__ import annotations

import tomllib
from importlib.metadata import version

import dns.name
import dns.rdata
import dns.version
import pytest
from packaging.requirements import Requirement

from bridge import cli
from bridge.mdns import dnspython_check
from tests.support.cli import ROOT


def test_the_installed_dnspython_passes() -> None:
    assert dnspython_check.problems() == []
    dnspython_check.verify()


def test_pyproject_pins_the_tested_range_and_it_holds_the_installed_release() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (pin,) = [Requirement(r) for r in project["dependencies"] if r.startswith("dnspython")]
    assert str(pin.specifier) == str(Requirement("x" + dnspython_check.TESTED_RANGE).specifier)
    assert pin.specifier.contains(version("dnspython")), version("dnspython")


def test_a_changed_name_hash_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """dnspython's names made with another hash would miss the parser's names as dict keys."""
    monkeypatch.setattr(dns.name.Name, "__hash__", lambda self: len(self.labels))
    found = dnspython_check.problems()
    assert any("hash" in p and "not dnspython's" in p for p in found), found
    with pytest.raises(dnspython_check.DnspythonMismatch) as err:
        dnspython_check.verify()
    message = str(err.value)
    assert message.startswith(f"dnspython {dns.version.version} breaks ")
    assert dnspython_check.TESTED_RANGE in message


def test_a_changed_digestable_form_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    real = dns.rdata.Rdata.to_digestable
    monkeypatch.setattr(
        dns.rdata.Rdata, "to_digestable", lambda self, origin=None: b"\0" + real(self, origin)
    )
    found = dnspython_check.problems()
    assert {p.split(" ", 1)[0] for p in found if "to_digestable()" in p} == {
        "A",
        "AAAA",
        "PTR",
        "SRV",
        "TXT",
    }, found


def test_run_refuses_to_start_and_names_the_version(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli.logutil, "setup", lambda level, fmt="text": None)
    monkeypatch.setattr(dns.name.Name, "__hash__", lambda self: 0)
    assert cli.main(["run"]) == cli.EXIT_INVALID
    err = capsys.readouterr().err
    assert err.startswith(f"mdns-gateway: cannot start: dnspython {dns.version.version} breaks ")
