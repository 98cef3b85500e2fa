"""The configs a new operator copies pass `mdns-gateway check` as shipped: examples/router.yaml
(a three-VLAN router) and the README's configuration reference (examples/reference.yaml)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge import cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True)
def _no_logging_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.logutil, "setup", lambda level, fmt="text": None)


def _check(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, str, str]:
    rc = cli.main(["check", "--config", str(path)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_the_router_example_passes_check(capsys: pytest.CaptureFixture[str]) -> None:
    config = EXAMPLES / "router.yaml"
    rc, out, err = _check(capsys, config)
    assert (rc, err) == (0, "")
    assert out == f"{config}: OK: 3 VLAN(s) (trusted, iot, guest), 3 policy resource(s)\n"


def test_the_readme_reference_config_is_the_shipped_one_and_passes_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"### Configuration reference\n.*?```yaml\n(.*?)```", readme, re.S)
    assert m is not None
    config = EXAMPLES / "reference.yaml"
    assert m.group(1) == config.read_text(), "keep examples/reference.yaml the README's block"
    rc, out, err = _check(capsys, config)
    assert rc == 0
    assert out.startswith(f"{config}: OK: 3 VLAN(s) (trusted, iot, guest), ")
    # the VLAN addresses of the example router are not on a test machine: warnings only
    for line in err.splitlines():
        assert re.fullmatch(r"warning: .*: dns\.listen\[\d\]: \S+ is not an address of .*", line)
