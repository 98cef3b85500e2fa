"""Config parsing: the README's reference block is valid, and errors name file, key and fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bridge import config

ROOT = Path(__file__).resolve().parents[1]


def readme_block(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading) :]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_readme_configuration_reference_is_a_valid_config(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(readme_block("### Configuration reference"))
    cfg = config.load(path)
    assert set(cfg.vlans) == {"trusted", "iot", "guest"}
    assert cfg.dns.view_listeners["iot"] == (("127.0.0.1", 5320),)
    assert ("fd00:10::1", 5300) in cfg.dns.listen
    assert cfg.policies == tmp_path / "policies"
    assert str(cfg.vlans["trusted"].subnets[1]) == "fd00:10::/64"


def test_readme_chrony_block_is_valid(tmp_path: Path) -> None:
    base = yaml.safe_load(readme_block("### Configuration reference"))
    base.update(yaml.safe_load(readme_block("### Pointing the gateway at chrony")))
    cfg = config.from_dict(base, "readme")
    assert cfg.chrony is not None and [s.name for s in cfg.chrony.servers] == ["router", "router2"]


@pytest.mark.parametrize(
    "data,key,fix",
    [
        ({"vlans": {}}, "vlans", "add e.g."),
        ({"vlans": {"Trusted!": {"interface": "br10"}}}, "vlans.Trusted!", "rename"),
        ({"vlans": {"t": {"interface": "br10", "colour": "red"}}}, "vlans.t.colour", "use one of"),
        (
            {"vlans": {"t": {"interface": "br10"}, "u": {"interface": "br10"}}},
            "vlans.u.interface",
            "its own interface",
        ),
        (
            {"vlans": {"t": {"interface": "br10", "domain": "t.local."}}},
            "vlans.t.domain",
            "home.arpa",
        ),
        (
            {"vlans": {"t": {"interface": "br10"}}, "dns": {"listen": ["0.0.0.0:53"]}},
            "dns.listen[0]",
            "list each address",
        ),
        (
            {"vlans": {"t": {"interface": "br10"}}, "dns": {"listen": ["localhost:53"]}},
            "dns.listen[0]",
            "HOST:PORT",
        ),
        (
            {
                "vlans": {"t": {"interface": "br10"}},
                "dns": {"listen": ["127.0.0.1:53"], "view_listeners": {"t": ["127.0.0.1:53"]}},
            },
            "dns",
            "its own port",
        ),
        (
            {"vlans": {"t": {"interface": "br10"}}, "dns": {"view_listeners": {"x": ["::1"]}}},
            "dns.view_listeners.x",
            "use one of t",
        ),
        ({"vlans": {"t": {"interface": "br10"}}, "dns": {"max_ttl": 0}}, "dns.max_ttl", "1..86400"),
        (
            {"vlans": {"t": {"interface": "br10"}}, "dns": {"default_view": "z"}},
            "dns.default_view",
            "'*'",
        ),
        (
            {"vlans": {"t": {"interface": "br10"}}, "cache": {"max_records": 5}},
            "cache.max_records",
            "100..10000000",
        ),
        ({"vlans": {"t": {"interface": "br10"}}, "polices": "./p"}, "polices", "policies"),
    ],
)
def test_errors_name_file_key_and_fix(data: dict, key: str, fix: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(config.ConfigError) as err:
        config.from_dict(data, "/etc/mdns-gateway/config.yaml")
    line = next((p for p in err.value.problems if p.split(": ")[1] == key), None)
    assert line is not None, err.value.problems
    assert line.startswith("/etc/mdns-gateway/config.yaml: ") and "fix:" in line and fix in line


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("vlans:\n  t: {interface: br10\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert str(path) in str(err.value) and "line" in str(err.value)


def test_addresses_accept_ipv6_brackets_and_default_port() -> None:
    cfg = config.from_dict(
        {
            "vlans": {"t": {"interface": "br10"}},
            "dns": {"listen": ["[::1]:53", "::1", "127.0.0.2"]},
        },
        "x",
    )
    assert cfg.dns.listen == (("::1", 53), ("::1", 5300), ("127.0.0.2", 5300))
