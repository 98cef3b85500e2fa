"""Config parsing: the README's reference block is valid, and errors name file, key and fix."""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import config, const

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
    assert cfg.dns.nameserver == "ns"


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
        (
            {"vlans": {"t": {"interface": "br10"}}, "dns": {"nameserver": "ns.router"}},
            "dns.nameserver",
            "the router's host name",
        ),
        (
            {"vlans": {"t": {"interface": "br10"}}, "dns": {"max_udp_payload": 9000}},
            "dns.max_udp_payload",
            "512..4096",
        ),
        (
            {"vlans": {"t": {"interface": "br10"}}, "dns": {"rate_limit": 100}},
            "dns.rate_limit",
            "responses_per_second: 100",
        ),
        (
            {"vlans": {"t": {"interface": "br10"}}, "dns": {"rate_limit": {"rate": 5}}},
            "dns.rate_limit.rate",
            "responses_per_second",
        ),
        (
            {"vlans": {"t": {"interface": "br10"}}, "dns": {"rate_limit": {"slip": -1}}},
            "dns.rate_limit.slip",
            "0..10",
        ),
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


# --- hostile and careless input (issue 12.6) -------------------------------------------------

BASE = {
    "vlans": {"t": {"interface": "br10", "subnets": ["10.0.0.0/24"]}},
    "dns": {
        "listen": ["127.0.0.1:5300"],
        "view_listeners": {"t": ["127.0.0.1:5310"]},
        "default_view": "t",
    },
    "http": {"listen": "127.0.0.1:9353"},
    "cache": {"max_records": 1000},
    "reflector": {"enabled": True, "rate": 10, "burst": 10},
    "chrony": {
        "servers": [{"name": "r", "control": "127.0.0.1:323", "addresses": {"t": ["10.0.0.1"]}}],
        "vlans": ["t"],
    },
}


def _paths(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


PATHS = _paths(BASE)
YAML_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["*", "t", "127.0.0.1:1", "com.", "10.0.0.0/8", ""]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _replace(path: tuple[object, ...], value: object) -> dict:  # type: ignore[type-arg]
    data = copy.deepcopy(BASE)
    node: Any = data
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return data


def test_the_fuzz_base_is_valid() -> None:
    assert set(config.from_dict(BASE, "f").vlans) == {"t"}


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(PATHS), YAML_VALUES)
def test_any_value_at_any_key_is_a_config_or_a_config_error(
    path: tuple[object, ...], value: object
) -> None:
    """24 such inputs raised TypeError and the like (subnets: 5, default_view: [a], ...)."""
    try:
        config.from_dict(_replace(path, value), "f.yaml")
    except config.ConfigError as exc:
        assert all(p.startswith("f.yaml: ") and "fix: " in p for p in exc.problems), exc.problems


@pytest.mark.parametrize(
    "path,value",
    [
        (("vlans", "t", "subnets"), 5),
        (("dns", "default_view"), ["a"]),
        (("chrony", "vlans"), [["a"]]),
        (("chrony", "vlans", 0), []),
        (("dns", "listen", 0), 5300),
        (("chrony", "servers", 0, "control"), ["a"]),
        (("chrony", "servers", 0, "addresses", "t"), [{"a": 1}]),
    ],
)
def test_wrong_types_found_by_the_adversarial_run_are_config_errors(
    path: tuple[object, ...], value: object
) -> None:
    with pytest.raises(config.ConfigError):
        config.from_dict(_replace(path, value), "f.yaml")


@pytest.mark.parametrize(
    "path,value,key,fix",
    [
        (("vlans", "t", "domain"), None, "vlans.t.domain", "trusted.home.arpa."),
        (("vlans", "t", "domain"), "com.", "vlans.t.domain", "trusted.home.arpa."),
        (("vlans", "t", "domain"), "arpa.", "vlans.t.domain", "trusted.home.arpa."),
        (("vlans", "t", "domain"), "10.in-addr.arpa.", "vlans.t.domain", "home.arpa."),
        (("dns", "browse_domain"), "com.", "dns.browse_domain", "home.arpa."),
        (("vlans", "t", "subnets"), ["0.0.0.0/0"], "vlans.t.subnets[0]", "own prefix"),
        (("vlans", "t", "subnets"), ["::/0"], "vlans.t.subnets[0]", "own prefix"),
        (("http", "listen"), 0, "http.listen", "HOST:PORT"),
        (("http", "listen"), "", "http.listen", "HOST:PORT"),
        (("dns", "listen", 0), "127.0.0.1:99999999999999", "dns.listen[0]", "HOST:PORT"),
    ],
)
def test_values_once_accepted_silently_are_rejected(
    path: tuple[object, ...], value: object, key: str, fix: str
) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.from_dict(_replace(path, value), "f.yaml")
    line = next((p for p in err.value.problems if p.split(": ")[1] == key), None)
    assert line is not None and "fix:" in line and fix in line, err.value.problems


def test_no_dns_listener_at_all_is_rejected_but_view_listeners_alone_are_fine() -> None:
    data = _replace(("dns", "listen"), [])
    assert config.from_dict(data, "f").dns.listen == ()
    data["dns"]["view_listeners"] = {}
    with pytest.raises(config.ConfigError, match=r"f: dns.listen: empty.*fix: list at least one"):
        config.from_dict(data, "f")


def test_http_listen_null_or_false_turns_the_api_off() -> None:
    assert config.from_dict(_replace(("http", "listen"), None), "f").http.listen is None
    assert config.from_dict(_replace(("http", "listen"), False), "f").http.listen is None


def test_empty_policies_path_or_the_configs_own_directory_is_rejected(tmp_path: Path) -> None:
    for value in ("", ".", str(tmp_path)):
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({**BASE, "policies": value}))
        with pytest.raises(config.ConfigError, match=r"policies: .*fix: "):
            config.load(path)
    path.write_text(yaml.safe_dump({**BASE, "policies": "./policies"}))
    assert config.load(path).policies == tmp_path / "policies"


def test_duplicate_keys_are_rejected_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("vlans:\n  t: {interface: br10}\ndns: {}\ndns: {listen: []}\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert (
        str(err.value)
        == f"{path}: line 4 column 1: not valid YAML (duplicate key 'dns'); fix: keep one of them"
    )
    path.write_text("base: &b {interface: br10}\nvlans:\n  t: {<<: *b, interface: br11}\n")
    with pytest.raises(config.ConfigError, match="base: unknown key"):  # a merge is no duplicate
        config.load(path)


def test_alias_bomb_gives_a_short_message_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines.append("vlans: {t: {interface: br10, subnets: *a9, domain: *a9}}")
    lines.append("dns: {listen: *a9, default_view: *a9}")
    lines.append("chrony: {servers: *a9, vlans: *a9}")
    path = tmp_path / "c.yaml"
    path.write_text("\n".join(lines) + "\n")
    start = time.process_time()
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert time.process_time() - start < 2.0
    assert len(str(err.value)) < 20_000, len(str(err.value))  # 226 MB before
    assert len(err.value.problems) <= const.CONFIG_MAX_PROBLEMS + 1


def test_problems_beyond_the_limit_are_counted_not_listed() -> None:
    with pytest.raises(config.ConfigError) as err:
        config.from_dict(_replace(("dns", "listen"), list(range(500))), "f")
    assert len(err.value.problems) == const.CONFIG_MAX_PROBLEMS + 1
    assert err.value.problems[-1].endswith("more problems")


def test_deep_nesting_huge_numbers_binary_and_huge_files_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    cases = {
        "vlans: " + "[" * 50_000 + "]" * 50_000 + "\n": "nested deeper than",
        "vlans: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n": "nested deeper than",
        "cache: {max_records: " + "7" * 5_000 + "}\n": "cannot be read",
        "vlans: {t: {interface: br10}}\ndns: {listen: ['[::1]:"
        + "5" * 5_000
        + "']}\n": "HOST:PORT",
    }
    for text, match in cases.items():
        path.write_text(text)
        with pytest.raises(config.ConfigError, match=match) as err:
            config.load(path)
        assert len(str(err.value)) < 2_000
    path.write_bytes(b"vlans: \xff\xfe\n")
    with pytest.raises(config.ConfigError, match="not UTF-8"):
        config.load(path)
    path.write_bytes(b"#" * (const.CONFIG_MAX_BYTES + 1))
    with pytest.raises(config.ConfigError, match="larger than"):
        config.load(path)


def test_trust_any_address_is_a_per_vlan_boolean() -> None:
    cfg = config.from_dict(_replace(("vlans", "t", "trust_any_address"), True), "f.yaml")
    assert cfg.vlans["t"].trust_any_address
    assert not config.from_dict(BASE, "f.yaml").vlans["t"].trust_any_address
    with pytest.raises(config.ConfigError) as err:
        config.from_dict(_replace(("vlans", "t", "trust_any_address"), "yes"), "f.yaml")
    (line,) = err.value.problems
    assert line.startswith("f.yaml: vlans.t.trust_any_address: expected true or false")
    assert "fix: write 'trust_any_address: true'" in line


def test_udp_clamp_and_rate_limit_default_on_and_rate_limit_null_turns_it_off() -> None:
    cfg = config.from_dict({"vlans": {"t": {"interface": "br10"}}}, "c.yaml")
    assert cfg.dns.max_udp_payload == const.DNS_UDP_CLAMP == 1232
    assert cfg.dns.rate_limit == config.RateLimitConfig(
        const.DNS_RRL_RATE, const.DNS_RRL_WINDOW, const.DNS_RRL_SLIP
    )
    off = config.from_dict(
        {"vlans": {"t": {"interface": "br10"}}, "dns": {"rate_limit": None}}, "c.yaml"
    )
    assert off.dns.rate_limit is None
