"""The command line: ``check``, ``explain``, ``--help`` of every subcommand, exit codes and the
messages a person reads (file, key or field, reason and fix), the embedded default config.

Most cases call ``bridge.cli.main`` in-process (fast); the entry points themselves
(``python -m bridge``, the ``mdns-gateway`` script) run as subprocesses.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge import __version__, cli
from tests.support.cli import ROOT, run_module

EXAMPLES = ROOT / "policies" / "examples"
VLANS = {"trusted": "br10", "iot": "br20", "guest": "br30"}
SUBCOMMANDS: dict[str, list[str]] = {  # subcommand -> what its --help must show
    "run": ["--config", "--log-level"],
    "check": ["--config", "--log-level"],
    "explain": ["--config", "--view", "--vlan", "service", "--live", "--url", "--token-file"],
    "browse": ["--vlan", "--view", "--type", "--resolve", "--url", "--token-file"],
    "dhcp-options": ["--config", "--format", "dnsmasq", "kea"],
    "corefile": ["--config", "--style", "--address"],
}


@pytest.fixture(autouse=True)
def _no_logging_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() configures the root logger; in-process that would outlive the test."""
    monkeypatch.setattr(cli.logutil, "setup", lambda level, fmt="text": None)


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``mdns-gateway *argv`` run in this process."""
    try:
        rc = cli.main(list(argv))
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def write_config(directory: Path, name: str = "gateway.yaml", **extra: Any) -> Path:
    data: dict[str, Any] = {
        "vlans": {v: {"interface": i, "domain": f"{v}.home.arpa."} for v, i in VLANS.items()},
        "dns": {"default_view": "*"},  # loopback clients answered (else check says none can be)
    }
    data.update(extra)
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A config whose policies directory holds home-basic.yaml and deny-examples.yaml."""
    policies = tmp_path / "policies"
    policies.mkdir()
    for name in ("home-basic.yaml", "deny-examples.yaml"):
        shutil.copy(EXAMPLES / name, policies / name)
    yield write_config(tmp_path, policies="policies")


def documents(*paths: Path) -> int:
    return sum(1 for p in paths for d in yaml.safe_load_all(p.read_text()) if d)


# --------------------------------------------------------------------------------------------
# --help, --version, usage errors


def test_top_level_help_lists_every_subcommand() -> None:
    res = run_module("--help")
    assert res.returncode == 0 and res.stderr == ""
    assert res.stdout.startswith("usage: mdns-gateway ")
    listed = re.findall(r"^    (\S+)", res.stdout, re.M)  # the subcommands, as argparse lists
    assert listed == list(SUBCOMMANDS)
    for sub in SUBCOMMANDS:  # each with its help text, on its line or the next
        assert re.search(rf"^    {sub}\s+[a-z]", res.stdout, re.M), sub


@pytest.mark.parametrize("sub", list(SUBCOMMANDS))
def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str], sub: str) -> None:
    rc, out, err = run_main(capsys, sub, "--help")
    assert rc == 0 and err == ""
    assert out.startswith(f"usage: mdns-gateway {sub} ")
    for word in SUBCOMMANDS[sub]:
        assert word in out, (sub, word)
    if "--config" in SUBCOMMANDS[sub]:
        assert "embedded default" in out  # says what happens without --config


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_main(capsys, "--version")
    assert rc == 0 and out.strip() == f"mdns-gateway {__version__}"


@pytest.mark.parametrize(
    "argv,needle",
    [
        ([], "the following arguments are required: COMMAND"),
        (["check", "--bogus"], "unrecognized arguments: --bogus"),
        (["reload"], "invalid choice: 'reload'"),
        (["explain", "--view", "trusted", "_ipp._tcp"], "required: --vlan"),
        (["explain", "--view", "trusted", "--vlan", "iot"], "required: service"),
        (["check", "--log-level", "loud"], "invalid choice: 'loud'"),
        (["dhcp-options", "--format", "isc"], "invalid choice: 'isc'"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    rc, out, err = run_main(capsys, *argv)
    assert rc == cli.EXIT_USAGE == 2
    assert needle in err and err.startswith("usage: mdns-gateway") and out == ""


# --------------------------------------------------------------------------------------------
# check: good


def test_check_config_with_example_policies(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    n = documents(*(home.parent / "policies").iterdir())
    assert n == 5
    rc, out, err = run_main(capsys, "check", "--config", str(home))
    assert (rc, err) == (0, "")
    assert out == f"{home}: OK: 3 VLAN(s) (trusted, iot, guest), {n} policy resource(s)\n"


def test_check_every_example_together(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "policies")
    shutil.copy(ROOT / "policies" / "crd.yaml", tmp_path / "policies")  # CRDs are skipped
    cfg = write_config(tmp_path, policies="policies")
    rc, out, err = run_main(capsys, "check", "-c", str(cfg))
    assert (rc, err) == (0, "")
    assert out.endswith(f", {documents(*EXAMPLES.glob('*.yaml'))} policy resource(s)\n")


def test_check_without_policies(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    rc, out, err = run_main(capsys, "check", "-c", str(cfg))
    assert (rc, err) == (0, "")
    assert out == f"{cfg}: OK: 3 VLAN(s) (trusted, iot, guest), 0 policy resource(s)\n"


def test_check_relative_policies_dir_is_relative_to_the_config(home: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    res = run_module("check", "--config", str(home), cwd=elsewhere)
    assert res.returncode == 0, res.stderr
    assert "5 policy resource(s)" in res.stdout


# --------------------------------------------------------------------------------------------
# check: bad configurations (exit 1; file, key, reason and fix)


BAD_CONFIGS = [
    (
        "unknown top-level key",
        "vlans: {trusted: {interface: br10}}\npolices: ./p\n",
        "polices: unknown key",
        "fix: use one of cache, chrony, dhcp, dns, http, policies",
    ),
    ("no VLANs", "dns: {}\n", "vlans: missing or empty", "fix: add e.g. 'vlans:"),
    (
        "VLAN without interface",
        "vlans: {trusted: {domain: t.home.arpa.}}\n",
        "vlans.trusted.interface: missing or not an interface name",
        "fix: e.g. 'interface: br10'",
    ),
    (
        "interface twice",
        "vlans: {a: {interface: br10}, b: {interface: br10}}\n",
        "vlans.b.interface: br10 is already VLAN a's interface",
        "fix: give each VLAN its own interface",
    ),
    (
        "domain under local.",
        "vlans: {trusted: {interface: br10, domain: trusted.local.}}\n",
        "vlans.trusted.domain: must not be under local.",
        "fix: use a home.arpa. name",
    ),
    (
        "listener twice",
        "vlans: {trusted: {interface: br10}}\n"
        "dns: {listen: ['127.0.0.1:5300'], view_listeners: {trusted: ['127.0.0.1:5300']}}\n",
        "dns: 127.0.0.1:5300 is listed more than once",
        "fix: give each listener its own port",
    ),
    (
        "view of an unknown VLAN",
        "vlans: {trusted: {interface: br10}}\n"
        "dns: {view_listeners: {trustd: ['127.0.0.1:5310']}}\n",
        "dns.view_listeners.trustd: not a configured VLAN",
        "fix: use one of trusted or '*'",
    ),
    (
        "port out of range",
        "vlans: {trusted: {interface: br10}}\ndns: {listen: ['127.0.0.1:0x']}\n",
        "dns.listen[0]:",
        "fix:",
    ),
    (
        "bad YAML",
        "vlans: {trusted: {interface: br10}\n",
        "line 2 column 1: not valid YAML",
        "fix: correct the syntax",
    ),
    ("not a mapping", "- vlans\n", "top level: expected a mapping", "fix: start with 'vlans:'"),
]


@pytest.mark.parametrize(
    "text,key,fix", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_check_bad_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, key: str, fix: str
) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(text)
    rc, out, err = run_main(capsys, "check", "--config", str(cfg))
    assert rc == cli.EXIT_INVALID == 1 and out == ""
    assert err.startswith("invalid configuration:\n")
    line = next((ln for ln in err.splitlines() if key in ln), None)
    assert line is not None, err
    assert line.startswith(f"{cfg}: ") and fix in line, line


def test_check_reports_every_problem_at_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(
        "vlans: {trusted: {interface: br10, colour: blue}}\nfoo: 1\n"
        "dns: {listen: ['127.0.0.1:5300', '127.0.0.1:5300']}\n"
    )
    rc, _, err = run_main(capsys, "check", "--config", str(cfg))
    assert rc == 1
    problems = err.splitlines()[1:]
    assert len(problems) == 3, err
    assert all(p.startswith(f"{cfg}: ") and "; fix: " in p for p in problems)


def test_check_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    rc, _, err = run_main(capsys, "check", "--config", str(missing))
    assert rc == 1
    assert f"{missing}: cannot read: No such file or directory; fix: check the --config path" in err


def test_check_policies_not_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = write_config(tmp_path, policies="missing-dir")
    rc, out, err = run_main(capsys, "check", "--config", str(cfg))
    assert rc == 1 and out == ""
    assert (
        f"{cfg}: policies: {tmp_path / 'missing-dir'} is not a directory; fix: create it "
        "or remove the key" in err
    )


def test_run_refuses_an_invalid_config(tmp_path: Path) -> None:
    """``run`` validates like ``check`` and exits 1 before it opens any socket."""
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text("vlans: {trusted: {interface: br10}}\npolices: ./p\n")
    res = run_module("run", "--config", str(cfg))
    assert res.returncode == 1
    assert "invalid configuration" in res.stderr and "polices: unknown key" in res.stderr


# --------------------------------------------------------------------------------------------
# check catches what run would hit (bridge/checks.py)


def test_check_refuses_http_on_a_dns_port(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = write_config(
        tmp_path,
        dns={"listen": ["127.0.0.1:5300"], "default_view": "*"},
        http={"listen": "127.0.0.1:5300"},
    )
    rc, out, err = run_main(capsys, "check", "--config", str(cfg))
    assert (rc, out) == (1, "")
    assert (
        f"{cfg}: http.listen: 127.0.0.1:5300 is also a DNS listener (DNS uses TCP there too); "
        "fix: give HTTP its own port, e.g. 127.0.0.1:9353" in err
    )


def test_an_address_not_on_this_machine_warns_in_check_and_stops_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """check may run where the config is written, not where it runs: a warning, exit 0. run
    exits 1 naming the address and the fix instead of dying on EADDRNOTAVAIL (Errno 99)."""
    cfg = write_config(tmp_path, dns={"listen": ["192.0.2.55:5300"], "default_view": "*"})
    line = (
        f"{cfg}: dns.listen[0]: 192.0.2.55 is not an address of this machine (port 5300); "
        "fix: use an address of one of its interfaces, or add it first"
    )
    rc, out, err = run_main(capsys, "check", "--config", str(cfg))
    assert rc == 0 and out.startswith(f"{cfg}: OK: 3 VLAN(s)")
    assert err == f"warning: {line}\n"
    res = run_module("run", "--config", str(cfg))
    assert res.returncode == 1
    assert res.stderr == f"cannot start:\n{line}\n"


def test_check_says_when_no_dns_client_can_be_answered(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A first config: DNS on loopback and no default view. Every query would be REFUSED."""
    cfg = write_config(tmp_path, dns={"listen": ["127.0.0.1:5300"]})
    rc, out, err = run_main(capsys, "check", "--config", str(cfg))
    assert (rc, out) == (1, "")
    assert err == (
        "no DNS client can be answered:\n"
        f"{cfg}: dns.listen[0]: 127.0.0.1:5300 is on loopback and dns.default_view is not set: "
        "every query there is REFUSED (a loopback client is in no VLAN subnet); fix: set "
        "dns.default_view (e.g. '*': every VLAN) or add a view listener (dns.view_listeners)\n"
    )


def test_check_warns_of_a_loopback_listener_beside_usable_ones(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = write_config(
        tmp_path,
        dns={"listen": ["127.0.0.1:5300"], "view_listeners": {"trusted": ["127.0.0.1:5310"]}},
    )
    rc, out, err = run_main(capsys, "check", "--config", str(cfg))
    assert rc == 0 and out.startswith(f"{cfg}: OK: 3 VLAN(s)")
    assert err.startswith(f"warning: {cfg}: dns.listen[0]: 127.0.0.1:5300 is on loopback and ")
    assert err.count("\n") == 1


# --------------------------------------------------------------------------------------------
# check: bad policies (exit 1; file, document, field, reason and fix)


def policy(name: str, spec: str) -> str:
    return (
        f"apiVersion: mdnsgateway.io/v1alpha1\nkind: ServicePolicy\n"
        f"metadata: {{name: {name}}}\nspec: {spec}\n"
    )


GOOD = policy("fine", "{from: [iot], to: [guest], services: [_hap._tcp]}")
BAD_POLICIES = [
    (
        "unknown VLAN",
        GOOD + "---\n" + policy("typo", "{from: [iot], to: [gust], services: ['*']}"),
        "document 2 (typo): spec.to[0]: unknown VLAN 'gust'",
        "did you mean 'guest'",
    ),
    (
        "unknown field",
        policy("a", "{from: [iot], to: [guest], service: [_ipp._tcp]}"),
        "document 1 (a): spec.service: unknown field 'service'",
        "fix: did you mean 'services'?",
    ),
    (
        "missing field",
        policy("a", "{from: [iot], to: [guest]}"),
        "document 1 (a): spec.services: required field is missing",
        "fix: add a list of service",
    ),
    (
        "not a service type",
        policy("a", "{from: [iot], to: [guest], services: [ipp]}"),
        "document 1 (a): spec.services[0]: 'ipp' is not a service type",
        "fix: write a DNS-SD service type such as '_ipp._tcp'",
    ),
    (
        "bad action",
        policy("a", "{from: [iot], to: [guest], services: ['*'], action: block}"),
        "document 1 (a): spec.action: string 'block' is not one of allow, deny",
        "fix: write 'allow' or 'deny'",
    ),
    (
        "reflect on a deny",
        policy("a", "{from: [iot], to: [guest], services: ['*'], action: deny, reflect: true}"),
        "document 1 (a): spec.reflect:",
        "fix: remove 'reflect' or make the policy 'action: allow'",
    ),
    (
        "empty glob list",
        policy("a", "{from: [iot], to: [guest], services: ['*'], instances: {allow: []}}"),
        "document 1 (a): spec.instances.allow: is empty",
        'fix: e.g. ["*"]',
    ),
    (
        "name taken by another file",
        policy("home-iot-never-sees-trusted", "{from: [iot], to: [guest], services: ['*']}"),
        "document 1 (home-iot-never-sees-trusted): metadata.name: 'home-iot-never-sees-trusted' is "
        "already used by home-iot-never-sees-trusted",
        "fix: give every policy a unique name",
    ),
    (
        "not a DNS-1123 name",
        policy("Bad_Name", "{from: [iot], to: [guest], services: ['*']}"),
        "document 1 (Bad_Name): metadata.name: 'Bad_Name' is not a DNS-1123 name",
        "fix: use lower-case letters",
    ),
    (
        "wrong apiVersion",
        GOOD.replace("v1alpha1", "v1"),
        "document 1 (fine): apiVersion: unsupported string 'mdnsgateway.io/v1'",
        "fix: use 'mdnsgateway.io/v1alpha1'",
    ),
    (
        "bare * (a YAML alias)",
        "apiVersion: mdnsgateway.io/v1alpha1\nkind: ServicePolicy\nmetadata: {name: a}\n"
        "spec:\n  from: [iot]\n  to: [guest]\n  services: [*]\n",
        "document 1 (unnamed): line 7 column 15: invalid YAML",
        "fix: check indentation, quoting",
    ),
]


@pytest.mark.parametrize(
    "text,where,fix", [c[1:] for c in BAD_POLICIES], ids=[c[0] for c in BAD_POLICIES]
)
def test_check_bad_policies(
    capsys: pytest.CaptureFixture[str], home: Path, text: str, where: str, fix: str
) -> None:
    bad = home.parent / "policies" / "zz-local.yaml"
    bad.write_text(text)
    rc, out, err = run_main(capsys, "check", "--config", str(home))
    assert rc == cli.EXIT_INVALID and out == ""
    assert err.startswith("invalid policies:\n"), err
    line = next((ln for ln in err.splitlines() if where in ln), None)
    assert line is not None, err
    assert line.startswith(f"{bad}: {where}") and fix in line, line
    # explain refuses to explain with a policy set the gateway would reject
    rc, out, err2 = run_main(
        capsys, "explain", "-c", str(home), "--view", "trusted", "--vlan", "iot", "_ipp._tcp"
    )
    assert rc == 1 and out == "" and line in err2


# --------------------------------------------------------------------------------------------
# explain


EXPLAIN = [
    # view, VLAN, service, verdict, lines that must appear (file names relative to policies/)
    (
        "trusted",
        "iot",
        "guest-tv._googlecast._tcp",
        "no",
        [
            "denied by policy hide-guest-devices-from-trusted (deny-examples.yaml, document 2)",
            "a deny wins over every allow",
            "would be allowed by policy home-media-and-printers-for-trusted (home-basic.yaml, "
            "document 1)",
        ],
    ),
    (
        "trusted",
        "iot",
        "Guest Printer._ipp._tcp",
        "yes",
        [
            "allowed by policy home-media-and-printers-for-trusted (home-basic.yaml, document 1)",
            "policy hide-guest-devices-from-trusted (deny-examples.yaml, document 2)"
            " does not apply:"
            " instance 'Guest Printer' matches instances.deny glob '*Guest Printer*'",
        ],
    ),
    (
        "guest",
        "iot",
        "_ipp._tcp",
        "yes",
        [
            "allowed by policy home-guest-printer-for-guests (home-basic.yaml, document 2)",
            "instances.allow ['Guest Printer*'] (only the instances these select)",
        ],
    ),
    (
        "guest",
        "iot",
        "IoT Printer._ipp._tcp",
        "no",
        [
            "not allowed: no allow policy applies",
            "policy home-guest-printer-for-guests (home-basic.yaml, document 2) does not apply: "
            "instance 'IoT Printer' matches no glob of instances.allow ['Guest Printer*']",
        ],
    ),
    (
        "iot",
        "trusted",
        "_ipp._tcp",
        "no",
        [
            "denied by policy home-iot-never-sees-trusted (home-basic.yaml, document 3)",
        ],
    ),
    (
        "guest",
        "trusted",
        "Office._smb._tcp",
        "no",
        [
            "denied by policy guest-never-sees-trusted (deny-examples.yaml, document 1)",
        ],
    ),
    ("iot", "iot", "_hap._tcp", "yes", ["own VLAN: a VLAN sees its own services by default"]),
    (
        "guest",
        "iot",
        "_hap._tcp",
        "no",
        [
            "policy home-guest-printer-for-guests (home-basic.yaml, document 2) does not apply: "
            "services [_ipp._tcp, _ipps._tcp] do not include _hap._tcp",
        ],
    ),
    (
        "iot",
        "guest",
        "_airplay._tcp",
        "no",
        [
            "no policy has guest (or *) in from and iot (or *) in to",
        ],
    ),
    ("*", "iot", "_hap._tcp", "yes", ["the router's own view (*) sees every VLAN"]),
]


@pytest.mark.parametrize(
    "view,vlan,service,verdict,lines", EXPLAIN, ids=[f"{e[0]}<-{e[1]}:{e[2]}" for e in EXPLAIN]
)
def test_explain_names_the_deciding_policy(
    capsys: pytest.CaptureFixture[str],
    home: Path,
    view: str,
    vlan: str,
    service: str,
    verdict: str,
    lines: list[str],
) -> None:
    rc, out, err = run_main(
        capsys, "explain", "--config", str(home), "--view", view, "--vlan", vlan, service
    )
    assert (rc, err) == (0, "")
    policies = home.parent / "policies"
    m = re.fullmatch(r"(.+)\.(_[^.]+\._(?:tcp|udp))", service)
    what = service if m is None else f"instance {m.group(1)!r} of {m.group(2)}"
    assert out.splitlines()[0] == f"view {view} sees {what} from VLAN {vlan}: {verdict}"
    for line in lines:
        line = re.sub(r"\((\S+\.yaml)", lambda m: f"({policies / m.group(1)}", line)
        assert line in out, f"{line!r} not in:\n{out}"
    assert "reflected into" in out and "published wide-area:" in out


def test_explain_reflect_names_the_policy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "policies").mkdir()
    shutil.copy(EXAMPLES / "airplay-chromecast-into-trusted.yaml", tmp_path / "policies")
    cfg = write_config(tmp_path, policies="policies")
    rc, out, _ = run_main(
        capsys,
        "explain",
        "-c",
        str(cfg),
        "--view",
        "trusted",
        "--vlan",
        "iot",
        "Living Room._airplay._tcp",
    )
    assert rc == 0
    assert "reflected into trusted: yes" in out
    assert "by policy airplay-into-trusted (" in out and "(reflect: true)" in out
    rc, out, _ = run_main(
        capsys, "explain", "-c", str(cfg), "--view", "iot", "--vlan", "iot", "_airplay._tcp"
    )
    assert "a VLAN's own services are never reflected back into it" in out


def test_explain_without_policies_says_nothing_crosses(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = write_config(tmp_path)
    rc, out, _ = run_main(
        capsys, "explain", "-c", str(cfg), "--view", "trusted", "--vlan", "iot", "_ipp._tcp"
    )
    assert rc == 0 and out.startswith("view trusted sees _ipp._tcp from VLAN iot: no\n")
    assert "nothing crosses VLANs unless an allow policy matches" in out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (
            ["--view", "gust", "--vlan", "iot", "_ipp._tcp"],
            "--view gust: not a configured VLAN; use one of trusted, iot, guest",
        ),
        (
            ["--view", "trusted", "--vlan", "lan", "_ipp._tcp"],
            "--vlan lan: not a configured VLAN; use one of trusted, iot, guest",
        ),
        (
            ["--view", "trusted", "--vlan", "iot", "ipp"],
            "ipp: 'ipp' is neither a service type like '_ipp._tcp' nor an instance",
        ),
    ],
)
def test_explain_bad_arguments_exit_2(
    capsys: pytest.CaptureFixture[str], home: Path, argv: list[str], needle: str
) -> None:
    rc, out, err = run_main(capsys, "explain", "-c", str(home), *argv)
    assert rc == 2 and out == ""
    assert needle in err


# --------------------------------------------------------------------------------------------
# the entry points and the embedded default


def test_python_dash_m_and_console_script_agree(home: Path) -> None:
    res = run_module("check", "--config", str(home))
    assert res.returncode == 0 and res.stdout.endswith("5 policy resource(s)\n")
    beside = Path(sys.executable).with_name("mdns-gateway")  # a venv's bin
    script = str(beside) if beside.exists() else shutil.which("mdns-gateway")
    if script is None:
        pytest.skip("the mdns-gateway script is not installed (pip install -e .)")
    res2 = run_module("check", "--config", str(home), exe=[script])
    assert (res2.returncode, res2.stdout) == (0, res.stdout)


def test_check_with_the_embedded_default() -> None:
    """No --config: the embedded default (every up, multicast, non-loopback interface is a
    VLAN) is valid wherever it runs."""
    res = run_module("check")
    assert res.returncode == 0, res.stderr
    m = re.fullmatch(
        r"<embedded default>: OK: (\d+) VLAN\(s\) \((.*)\), 0 policy resource\(s\)\n", res.stdout
    )
    assert m is not None, res.stdout
    names = [] if m.group(2) == "-" else m.group(2).split(", ")
    assert int(m.group(1)) == len(names)
    assert "lo" not in names


def test_log_format_json_writes_one_object_per_line() -> None:
    res = run_module("check", "--log-format", "json", "--log-level", "info")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stderr.splitlines()]
    assert lines and {"time", "level", "logger", "message"} <= set(lines[0])
    assert any(line["message"].startswith("embedded default: VLANs on ") for line in lines)
