"""dnspython's idna feature check answered without importlib.metadata (bridge/dnsfeatures.py):
the same answer dnspython gets from the metadata, the metadata module left unimported until
used, and the real module behind the stand-in once it is."""

from __future__ import annotations

import ast
import subprocess
import sys

import idna

from bridge.dnsfeatures import _version, idna_answer
from tests.support.cli import ROOT


def _child(code: str) -> object:
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert res.returncode == 0, res.stderr
    return ast.literal_eval(res.stdout.strip().splitlines()[-1])


def test_the_gateway_imports_no_metadata_and_dnspython_picks_the_codec_the_metadata_picks() -> None:
    code = (
        "import sys; import bridge.cli, bridge.app, bridge.dnsfront.server\n"
        "import dns.name, dns._features\n"
        "early = sorted(m for m in sys.modules if m.split('.')[0] in ('email', 'zipfile', 'csv')"
        " or m.startswith('importlib.metadata.'))\n"
        "stand_in = type(sys.modules['importlib.metadata']).__name__\n"
        "ours = dns.name.have_idna_2008\n"
        # dnspython's own answer, from the distribution metadata (imports the real module)
        "reqs = dns._features._requirements['idna']\n"
        "theirs = all(dns._features._version_check(r) for r in reqs)\n"
        "print((early, stand_in, ours, theirs))"
    )
    early, stand_in, ours, theirs = _child(code)  # type: ignore[misc]
    assert early == []
    assert stand_in == "_Deferred"
    assert ours == theirs


def test_the_first_use_of_the_metadata_puts_the_real_module_in_place() -> None:
    code = (
        "import sys, importlib, bridge\n"
        "from importlib.metadata import version\n"
        "import importlib.metadata as md\n"
        "import dns._features\n"
        "print((version('idna'), md.version('dnspython') == __import__('dns.version').version"
        ".version, type(sys.modules['importlib.metadata']).__name__,"
        " importlib.metadata is sys.modules['importlib.metadata'],"
        " dns._features.have('idna'), 'email' in sys.modules))"
    )
    got = _child(code)
    assert got == (idna.__version__, True, "module", True, True, True)


def test_idna_answer_compares_the_modules_version_as_dnspython_does() -> None:
    assert _version("3.20") == (3, 20)
    assert _version("3.20rc1") == (3, 20)
    assert _version("10.0.post1") == (10, 0)
    assert idna_answer([f"idna>={idna.__version__}"]) is True
    assert idna_answer(["idna>=1.0"]) is True
    assert idna_answer(["idna>=999.1"]) is False
    # a requirement of another form: dnspython is left to answer from the metadata
    assert idna_answer(["idna>=3.20", "other>=1"]) is None
    assert idna_answer(["idna~=3.20"]) is None
