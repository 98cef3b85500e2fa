"""Unit and property tests of the pure policy engine (bridge/policy/)."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import shutil
import time
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bridge.policy.engine as engine_mod
import bridge.policy.model as policy_mod
from bridge.policy import (
    ANY,
    PolicyEngine,
    PolicyError,
    ServicePolicy,
    default_engine,
    load_policy_dir,
    normalize_service_type,
    parse_policy_text,
    split_service_name,
)
from bridge.policy.watch import PolicyWatcher

ROOT = Path(__file__).resolve().parent.parent
VLANS = ("trusted", "iot", "guest")
ERROR_LINE = re.compile(
    r"^(?P<file>[^:]+): document (?P<doc>\d+) \((?P<name>[^)]*)\): "
    r"(?P<path>[^:]+): (?P<reason>.+); fix: (?P<fix>.+)$"
)


def pol(
    name: str,
    from_: Sequence[str],
    to: Sequence[str],
    services: Sequence[str] = (ANY,),
    *,
    allow: Sequence[str] = (ANY,),
    deny: Sequence[str] = (),
    hosts: bool = False,
    action: str = "allow",
    reflect: bool = False,
    wide_area: bool = False,
) -> ServicePolicy:
    assert action in ("allow", "deny")
    return ServicePolicy(
        name=name,
        source=(f"{name}.yaml", 1),
        from_vlans=frozenset(from_),
        to_vlans=frozenset(to),
        services=frozenset(services),
        instances_allow=tuple(allow),
        instances_deny=tuple(deny),
        hosts=hosts,
        action="deny" if action == "deny" else "allow",
        reflect=reflect,
        wide_area=wide_area,
    )


def doc(name: str, spec: str, *, api: str = "mdnsgateway.io/v1alpha1") -> str:
    body = "\n".join("  " + line for line in spec.strip().splitlines())
    return f"apiVersion: {api}\nkind: ServicePolicy\nmetadata:\n  name: {name}\nspec:\n{body}\n"


def problems_of(text: str, vlans: Sequence[str] = VLANS, filename: str = "p.yaml") -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy_text(text, filename, vlans)
    return list(info.value.problems)


# ------------------------------------------------------------------------------------------------
# Defaults
# ------------------------------------------------------------------------------------------------


def test_default_engine_each_vlan_sees_only_itself() -> None:
    engine = default_engine(VLANS)
    assert engine.policies == ()
    for view in VLANS:
        vp = engine.view(view)
        assert vp.name == view
        assert vp.vlans == frozenset({view})
        for vlan in VLANS:
            own = vlan == view
            assert vp.service_visible(vlan, "_ipp._tcp") is own
            assert vp.service_visible(vlan, "_ipp._tcp", "Office Printer") is own
            assert vp.hosts_visible(vlan) is own
            assert vp.reflect_visible(vlan, "_ipp._tcp") is False
            assert vp.wide_area_visible(vlan, "_ipp._tcp") is False


def test_router_view_sees_everything_and_receives_no_reflection() -> None:
    engine = PolicyEngine([pol("deny-all", [ANY], [ANY], action="deny", hosts=True)], VLANS)
    router = engine.view(ANY)
    assert router.vlans == frozenset(VLANS)
    for vlan in VLANS:
        assert router.service_visible(vlan, "_ipp._tcp", "x")
        assert router.hosts_visible(vlan)
        assert not router.reflect_visible(vlan, "_ipp._tcp")
        assert not router.wide_area_visible(vlan, "_ipp._tcp")


def test_unknown_view_and_vlan() -> None:
    engine = default_engine(VLANS)
    with pytest.raises(KeyError, match="unknown view 'lab'"):
        engine.view("lab")
    vp = engine.view("trusted")
    assert not vp.service_visible("lab", "_ipp._tcp")
    assert not vp.hosts_visible("lab")


def test_engine_rejects_policies_naming_unconfigured_vlans() -> None:
    with pytest.raises(PolicyError, match=r"spec.from: unknown VLAN 'lab'"):
        PolicyEngine([pol("x", ["lab"], ["trusted"])], VLANS)
    with pytest.raises(PolicyError, match="cannot be a VLAN name"):
        PolicyEngine([], ["trusted", ANY])


# ------------------------------------------------------------------------------------------------
# Allow, deny, wildcards
# ------------------------------------------------------------------------------------------------


def test_allow_is_directional() -> None:
    engine = PolicyEngine([pol("iot-to-trusted", ["iot"], ["trusted"], ["_ipp._tcp"])], VLANS)
    trusted, iot, guest = (engine.view(v) for v in VLANS)
    assert trusted.service_visible("iot", "_ipp._tcp")
    assert trusted.service_visible("iot", "_ipp._tcp", "Office Printer")
    assert not trusted.service_visible("iot", "_googlecast._tcp")
    assert not iot.service_visible("trusted", "_ipp._tcp")
    assert not guest.service_visible("iot", "_ipp._tcp")
    assert trusted.vlans == {"trusted", "iot"}
    assert iot.vlans == {"iot"}
    assert not trusted.hosts_visible("iot")  # hosts: false by default


def test_star_everywhere() -> None:
    engine = PolicyEngine([pol("all", [ANY], [ANY], [ANY])], VLANS)
    for view in VLANS:
        vp = engine.view(view)
        assert vp.vlans == frozenset(VLANS)
        for vlan in VLANS:
            assert vp.service_visible(vlan, "_anything._udp", "Any Name")
            assert not vp.hosts_visible(vlan) or vlan == view


def test_deny_wins_over_allow_regardless_of_order() -> None:
    allow = pol("allow-all", [ANY], [ANY], [ANY])
    deny = pol("deny-ipp", ["iot"], ["guest"], ["_ipp._tcp"], action="deny")
    for policies in ([allow, deny], [deny, allow]):
        guest = PolicyEngine(policies, VLANS).view("guest")
        assert not guest.service_visible("iot", "_ipp._tcp")
        assert not guest.service_visible("iot", "_ipp._tcp", "Office")
        assert guest.service_visible("iot", "_airplay._tcp")
        assert guest.service_visible("trusted", "_ipp._tcp")
        assert guest.vlans == frozenset(VLANS)


def test_deny_wins_over_own_vlan_default() -> None:
    engine = PolicyEngine([pol("hide", ["guest"], ["guest"], ["_smb._tcp"], action="deny")], VLANS)
    guest = engine.view("guest")
    assert not guest.service_visible("guest", "_smb._tcp")
    assert guest.service_visible("guest", "_ipp._tcp")
    assert guest.hosts_visible("guest")  # the deny has hosts: false


def test_deny_everything_removes_vlan_from_view() -> None:
    engine = PolicyEngine(
        [
            pol("allow", ["iot"], ["trusted"], ["_ipp._tcp", "_airplay._tcp"]),
            pol("deny1", ["iot"], ["trusted"], ["_ipp._tcp"], action="deny"),
        ],
        VLANS,
    )
    assert engine.view("trusted").vlans == {"trusted", "iot"}
    engine = PolicyEngine(
        [
            pol("allow", ["iot"], ["trusted"], ["_ipp._tcp", "_airplay._tcp"]),
            pol("deny1", ["iot"], ["trusted"], ["_ipp._tcp"], action="deny"),
            pol("deny2", ["iot"], ["trusted"], ["_airplay._tcp"], action="deny"),
        ],
        VLANS,
    )
    assert engine.view("trusted").vlans == {"trusted"}
    engine = PolicyEngine([pol("deny-own", ["guest"], ["guest"], action="deny")], VLANS)
    assert engine.view("guest").vlans == {"guest"}  # its host names are still visible
    engine = PolicyEngine([pol("deny-own", ["guest"], ["guest"], action="deny", hosts=True)], VLANS)
    assert engine.view("guest").vlans == frozenset()


# ------------------------------------------------------------------------------------------------
# Instances
# ------------------------------------------------------------------------------------------------


def test_instance_allow_globs() -> None:
    engine = PolicyEngine(
        [pol("guest-printer", ["iot"], ["guest"], ["_ipp._tcp"], allow=["Guest Printer*"])], VLANS
    )
    guest = engine.view("guest")
    assert guest.service_visible("iot", "_ipp._tcp")  # the type: some instance may be visible
    assert guest.service_visible("iot", "_ipp._tcp", "Guest Printer")
    assert guest.service_visible("iot", "_ipp._tcp", "guest printer (2)")  # case-insensitive
    assert guest.service_visible("iot", "_ipp._tcp", "GUEST PRINTER.v2")  # dots are plain text
    assert not guest.service_visible("iot", "_ipp._tcp", "Office Printer")
    assert guest.vlans == {"guest", "iot"}


def test_instance_deny_globs_and_unicode() -> None:
    engine = PolicyEngine(
        [pol("media", ["iot"], ["trusted"], deny=["*Guest*", "Küche*", "tv-?"])], VLANS
    )
    trusted = engine.view("trusted")
    assert trusted.service_visible("iot", "_airplay._tcp", "Living Room")
    assert not trusted.service_visible("iot", "_airplay._tcp", "The GUEST TV")
    assert not trusted.service_visible("iot", "_airplay._tcp", "KÜCHE Lautsprecher")
    nfd = unicodedata.normalize("NFD", "Küche Radio")
    assert not trusted.service_visible("iot", "_airplay._tcp", nfd)  # NFD and NFC agree
    assert not trusted.service_visible("iot", "_airplay._tcp", "tv-1")
    assert trusted.service_visible("iot", "_airplay._tcp", "tv-10")
    assert trusted.service_visible("iot", "_airplay._tcp")


def test_deny_with_instance_globs_hides_only_those_instances() -> None:
    engine = PolicyEngine(
        [
            pol("allow", ["iot"], ["trusted"]),
            pol(
                "no-guest",
                ["iot"],
                ["trusted"],
                allow=["*Guest*"],
                deny=["*Printer*"],
                action="deny",
            ),
        ],
        VLANS,
    )
    trusted = engine.view("trusted")
    assert trusted.service_visible("iot", "_googlecast._tcp")
    assert not trusted.service_visible("iot", "_googlecast._tcp", "Guest TV")
    assert trusted.service_visible("iot", "_ipp._tcp", "Guest Printer")  # excepted from the deny
    assert trusted.service_visible("iot", "_googlecast._tcp", "Living Room")


def test_glob_special_characters() -> None:
    engine = PolicyEngine([pol("p", ["iot"], ["trusted"], allow=["Printer [[]2]", "a.b*"])], VLANS)
    trusted = engine.view("trusted")
    assert trusted.service_visible("iot", "_ipp._tcp", "Printer [2]")
    assert not trusted.service_visible("iot", "_ipp._tcp", "Printer 2")
    assert trusted.service_visible("iot", "_ipp._tcp", "a.b.c")
    assert not trusted.service_visible("iot", "_ipp._tcp", "axb")  # '.' is literal


# ------------------------------------------------------------------------------------------------
# Service type handling
# ------------------------------------------------------------------------------------------------


def test_subtypes_follow_their_parent_type() -> None:
    engine = PolicyEngine([pol("http", ["iot"], ["trusted"], ["_http._tcp"])], VLANS)
    trusted = engine.view("trusted")
    # the caller resolves a subtype to its parent
    assert trusted.service_visible("iot", "_http._tcp", "Printer admin")
    # and the engine tolerates callers that do not, and odd spellings
    assert trusted.service_visible("iot", "_printer._sub._http._tcp")
    assert trusted.service_visible("iot", "_HTTP._TCP.local.")
    assert not trusted.service_visible("iot", "_printer._sub._ipp._tcp")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("_ipp._tcp", "_ipp._tcp"),
        ("_IPP._TCP", "_ipp._tcp"),
        ("_ipp._tcp.", "_ipp._tcp"),
        ("_ipp._tcp.local.", "_ipp._tcp"),
        ("_ipp._tcp.LOCAL", "_ipp._tcp"),
        ("_nvstream_dbd._tcp", "_nvstream_dbd._tcp"),
        ("_androidtvremote2._tcp", "_androidtvremote2._tcp"),
        ("*", "*"),
    ],
)
def test_normalize_service_type(text: str, expected: str) -> None:
    assert normalize_service_type(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "ipp._tcp",
        "_ipp",
        "_ipp._sctp",
        "_printer._sub._http._tcp",
        "_-x._tcp",
        "",
        "**",
        "_a b._tcp",
    ],
)
def test_normalize_service_type_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        normalize_service_type(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("_ipp._tcp", ("_ipp._tcp", None)),
        ("My Printer._ipp._tcp", ("_ipp._tcp", "My Printer")),
        ("My Printer.v2._ipp._tcp.local.", ("_ipp._tcp", "My Printer.v2")),
        ("_printer._sub._http._tcp", ("_http._tcp", None)),
    ],
)
def test_split_service_name(text: str, expected: tuple[str, str | None]) -> None:
    assert split_service_name(text) == expected


def test_split_service_name_rejects() -> None:
    for text in ("printer", "My Printer.ipp.tcp", "._ipp._tcp"):
        with pytest.raises(ValueError):
            split_service_name(text)


# ------------------------------------------------------------------------------------------------
# hosts, reflect, wideArea
# ------------------------------------------------------------------------------------------------


def test_hosts_flag() -> None:
    engine = PolicyEngine(
        [
            pol("nas", ["iot"], ["trusted"], ["_smb._tcp"], hosts=True),
            pol("no-hosts", ["trusted"], [ANY], ["_x._tcp"], hosts=True, action="deny"),
        ],
        VLANS,
    )
    trusted, iot, guest = (engine.view(v) for v in VLANS)
    assert trusted.hosts_visible("iot")
    assert not iot.hosts_visible("trusted")
    assert not guest.hosts_visible("iot")
    assert not trusted.hosts_visible("trusted")  # the deny with hosts: true covers trusted itself
    assert iot.hosts_visible("iot")
    assert trusted.service_visible("trusted", "_ipp._tcp")  # services of trusted: still own


def test_hosts_only_vlan_is_in_view_vlans() -> None:
    engine = PolicyEngine(
        [
            pol("hosts", ["iot"], ["trusted"], ["_ipp._tcp"], hosts=True),
            pol("no-ipp", ["iot"], ["trusted"], ["_ipp._tcp"], action="deny"),
        ],
        VLANS,
    )
    trusted = engine.view("trusted")
    assert not trusted.service_visible("iot", "_ipp._tcp")
    assert trusted.hosts_visible("iot")
    assert trusted.vlans == {"trusted", "iot"}


def test_reflect_flag() -> None:
    engine = PolicyEngine(
        [
            pol("cast", ["iot"], ["trusted"], ["_googlecast._tcp"], reflect=True),
            pol("print", ["iot"], ["trusted"], ["_ipp._tcp"]),
            pol("self", ["iot"], ["iot"], reflect=True),
            pol("no-guest-tv", ["iot"], ["trusted"], allow=["*Guest*"], action="deny"),
        ],
        VLANS,
    )
    trusted = engine.view("trusted")
    assert trusted.reflect_visible("iot", "_googlecast._tcp")
    assert trusted.reflect_visible("iot", "_googlecast._tcp", "Living Room")
    assert not trusted.reflect_visible("iot", "_googlecast._tcp", "Guest TV")
    assert trusted.service_visible("iot", "_ipp._tcp")
    assert not trusted.reflect_visible("iot", "_ipp._tcp")
    assert not engine.view("iot").reflect_visible("iot", "_googlecast._tcp")  # never into itself
    assert not engine.view("guest").reflect_visible("iot", "_googlecast._tcp")


def test_wide_area_flag() -> None:
    engine = PolicyEngine(
        [
            pol("wa", ["iot"], ["trusted"], ["_ipp._tcp"], wide_area=True),
            pol("own", ["guest"], ["guest"], ["_ipp._tcp"], wide_area=True),
            pol("plain", ["iot"], ["trusted"], ["_airplay._tcp"]),
        ],
        VLANS,
    )
    trusted, iot, guest = (engine.view(v) for v in VLANS)
    assert trusted.wide_area_visible("iot", "_ipp._tcp", "Office")
    assert not trusted.wide_area_visible("iot", "_airplay._tcp")
    assert not iot.wide_area_visible("iot", "_ipp._tcp")  # no default for the own VLAN
    assert guest.wide_area_visible("guest", "_ipp._tcp")
    router = engine.view(ANY)
    assert router.wide_area_visible("iot", "_ipp._tcp")  # published for some VLAN view
    assert router.wide_area_visible("guest", "_ipp._tcp")
    assert not router.wide_area_visible("iot", "_airplay._tcp")


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "MEMO_MAX_TYPES", 4)
    monkeypatch.setattr(engine_mod, "MEMO_MAX_INSTANCES", 8)
    engine = PolicyEngine([pol("p", ["iot"], ["trusted"], allow=["A*"])], VLANS)
    trusted = engine.view("trusted")
    for i in range(50):
        assert trusted.service_visible("iot", f"_t{i}._tcp", f"A{i}")
        assert not trusted.service_visible("iot", "_ipp._tcp", f"B{i}")
    decider = trusted._visible
    assert len(decider._types) <= 4
    assert len(decider._instances) <= 8
    # answers stay right after eviction
    assert trusted.service_visible("iot", "_t0._tcp", "A0")


# ------------------------------------------------------------------------------------------------
# explain
# ------------------------------------------------------------------------------------------------


def example_engine() -> PolicyEngine:
    return PolicyEngine(load_policy_dir(ROOT / "policies" / "examples", VLANS), VLANS)


def test_explain_allow_names_policy_and_file() -> None:
    exp = PolicyEngine(
        parse_policy_text(
            doc("printers", "from: [iot]\nto: ['*']\nservices: [_ipp._tcp]"), "printers.yaml", VLANS
        ),
        VLANS,
    ).explain("guest", "iot", "Office Printer._ipp._tcp")
    assert exp.visible and not exp.reflect and not exp.wide_area
    assert exp.instance == "Office Printer" and exp.service_type == "_ipp._tcp"
    text = str(exp)
    assert "view guest sees instance 'Office Printer' of _ipp._tcp from VLAN iot: yes" in text
    assert "allowed by policy printers (printers.yaml, document 1)" in text
    assert text.splitlines() == exp.reasons


def test_explain_deny_wins() -> None:
    exp = example_engine().explain("trusted", "iot", "Guest TV._googlecast._tcp")
    assert not exp.visible and not exp.reflect
    text = str(exp)
    assert "denied by policy hide-guest-devices-from-trusted" in text
    assert "deny-examples.yaml, document 2" in text
    assert "a deny wins over every allow" in text
    assert "would be allowed by policy chromecast-into-trusted" in text


def test_explain_defaults() -> None:
    engine = example_engine()
    own = str(engine.explain("iot", "iot", "_ipp._tcp"))
    assert "own VLAN: a VLAN sees its own services by default" in own
    assert "never reflected back into it" in own
    none = engine.explain("guest", "trusted", "_ipp._tcp")
    assert not none.visible
    assert "denied by policy guest-never-sees-trusted" in str(none)
    unmatched = default_engine(VLANS).explain("guest", "trusted", "_ipp._tcp")
    assert "no policy has trusted (or *) in from and guest (or *) in to" in str(unmatched)
    miss = engine.explain("guest", "iot", "Office._airplay._tcp")
    assert not miss.visible
    assert "not allowed: no allow policy applies" in str(miss)
    assert "does not apply: services [_ipp._tcp, _ipps._tcp] do not include _airplay._tcp" in str(
        miss
    )
    glob_miss = str(engine.explain("guest", "iot", "Office._ipp._tcp.local."))
    assert "matches no glob of instances.allow ['Guest Printer*']" in glob_miss


def test_explain_reflect_and_router() -> None:
    engine = example_engine()
    exp = engine.explain("trusted", "iot", "Living Room._googlecast._tcp")
    assert exp.visible and exp.reflect
    assert "by policy chromecast-into-trusted" in str(exp)
    router = engine.explain(ANY, "trusted", "_ssh._tcp")
    assert router.visible and not router.reflect
    assert "router's own view" in str(router)


def test_explain_rejects_bad_input() -> None:
    engine = default_engine(VLANS)
    with pytest.raises(ValueError, match="unknown view"):
        engine.explain("lab", "iot", "_ipp._tcp")
    with pytest.raises(ValueError, match="unknown VLAN"):
        engine.explain("iot", "lab", "_ipp._tcp")
    with pytest.raises(ValueError, match="neither a service type"):
        engine.explain("iot", "iot", "printer")


# ------------------------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------------------------


def test_parse_full_document_and_defaults() -> None:
    text = (
        "# leading comment\n---\n---\n"
        + doc(
            "media-for-trusted",
            """
from: [iot]
to: [trusted]
services: [_googlecast._tcp, _AirPlay._tcp.local., _raop._tcp, "_ipp._tcp."]
instances: {allow: ["*"], deny: ["*Guest*"]}
hosts: false
action: allow
reflect: true
wideArea: false
""",
        )
        + "---\n"
        + doc("minimal", "from: ['*']\nto: [guest]\nservices: ['*']")
        + "---\n# only a comment\n"
    )
    first, second = parse_policy_text(text, "home.yaml", VLANS)
    assert first == ServicePolicy(
        name="media-for-trusted",
        source=("home.yaml", 2),  # the first '---' starts document 1
        from_vlans=frozenset({"iot"}),
        to_vlans=frozenset({"trusted"}),
        services=frozenset({"_googlecast._tcp", "_airplay._tcp", "_raop._tcp", "_ipp._tcp"}),
        instances_allow=("*",),
        instances_deny=("*Guest*",),
        hosts=False,
        action="allow",
        reflect=True,
        wide_area=False,
    )
    assert second.source == ("home.yaml", 3)
    assert second.from_vlans == {"*"} and second.services == {"*"}
    assert (second.instances_allow, second.instances_deny) == (("*",), ())
    assert (second.hosts, second.action, second.reflect, second.wide_area) == (
        False,
        "allow",
        False,
        False,
    )


def test_parse_null_optional_fields_are_absent() -> None:
    text = doc(
        "nulls", "from: [iot]\nto: [trusted]\nservices: [_ipp._tcp]\ninstances:\nhosts:\naction:"
    )
    (p,) = parse_policy_text(text, "n.yaml", VLANS)
    assert p.action == "allow" and p.instances_allow == ("*",) and not p.hosts


def test_parse_skips_crd_and_empty() -> None:
    crd = (ROOT / "policies" / "crd.yaml").read_text()
    assert parse_policy_text(crd, "crd.yaml", VLANS) == []
    assert parse_policy_text("", "e.yaml", VLANS) == []
    assert parse_policy_text("---\n...\n", "e.yaml", VLANS) == []


def test_error_message_format_names_file_document_field_reason_and_fix() -> None:
    text = (
        doc("ok", "from: [iot]\nto: [trusted]\nservices: [_ipp._tcp]")
        + "---\n"
        + doc("printers", "from: [iot]\nto: [trustd]\nservices: [_ipp._tcp]")
    )
    (line,) = problems_of(text, filename="policies/home.yaml")
    m = ERROR_LINE.match(line)
    assert m, line
    assert m["file"] == "policies/home.yaml"
    assert m["doc"] == "2"
    assert m["name"] == "printers"
    assert m["path"] == "spec.to[0]"
    assert m["reason"] == "unknown VLAN 'trustd'"
    assert "guest, iot, trusted" in m["fix"] and "did you mean 'trusted'?" in m["fix"]


@pytest.mark.parametrize(
    ("spec", "path", "reason"),
    [
        ("to: [trusted]\nservices: [_ipp._tcp]", "spec.from", "required field is missing"),
        (
            "from: iot\nto: [trusted]\nservices: [_ipp._tcp]",
            "spec.from",
            "expected a list of VLAN names",
        ),
        ("from: []\nto: [trusted]\nservices: [_ipp._tcp]", "spec.from", "is empty"),
        ("from: [iot, iot]\nto: [trusted]\nservices: [_ipp._tcp]", "spec.from[1]", "listed twice"),
        ("from: [no]\nto: [trusted]\nservices: [_ipp._tcp]", "spec.from[0]", "got boolean false"),
        ("from: [10]\nto: [trusted]\nservices: [_ipp._tcp]", "spec.from[0]", "got number 10"),
        (
            "from: ['a b']\nto: [trusted]\nservices: [_ipp._tcp]",
            "spec.from[0]",
            "is not a VLAN name",
        ),
        ("from: [iot]\nto: [lab]\nservices: [_ipp._tcp]", "spec.to[0]", "unknown VLAN 'lab'"),
        (
            "from: [iot]\nto: [trusted]\nservices: [ipp._tcp]",
            "spec.services[0]",
            "is not a service type",
        ),
        (
            "from: [iot]\nto: [trusted]\nservices: [_printer._sub._http._tcp]",
            "spec.services[0]",
            "is a subtype",
        ),
        (
            "from: [iot]\nto: [trusted]\nservices: [_ipp._tcp]\ninstances: ['*']",
            "spec.instances",
            "expected a mapping",
        ),
        (
            "from: [iot]\nto: [trusted]\nservices: [_ipp._tcp]\ninstances: {allow: []}",
            "spec.instances.allow",
            "is empty",
        ),
        (
            "from: [iot]\nto: [trusted]\nservices: [_ipp._tcp]\ninstances: {deny: ['']}",
            "spec.instances.deny[0]",
            "empty or holds control",
        ),
        (
            "from: [iot]\nto: [trusted]\nservices: [_ipp._tcp]\ninstances: {alow: ['*']}",
            "spec.instances.alow",
            "unknown field 'alow'",
        ),
        (
            "from: [iot]\nto: [trusted]\nservices: [_ipp._tcp]\nhosts: 'yes'",
            "spec.hosts",
            "expected true or false",
        ),
        (
            "from: [iot]\nto: [trusted]\nservices: [_ipp._tcp]\naction: Deny",
            "spec.action",
            "is not one of allow, deny",
        ),
        (
            "from: [iot]\nto: [trusted]\nservices: [_ipp._tcp]\naction: deny\nreflect: true",
            "spec.reflect",
            "no meaning on a deny policy",
        ),
        (
            "from: [iot]\nto: [trusted]\nservices: [_ipp._tcp]\naction: deny\nwideArea: true",
            "spec.wideArea",
            "no meaning on a deny policy",
        ),
        (
            "from: [iot]\nto: [trusted]\nservices: [_ipp._tcp]\nreflct: true",
            "spec.reflct",
            "unknown field 'reflct'",
        ),
    ],
)
def test_spec_errors(spec: str, path: str, reason: str) -> None:
    (line,) = problems_of(doc("bad", spec))
    m = ERROR_LINE.match(line)
    assert m, line
    assert (m["doc"], m["name"], m["path"]) == ("1", "bad", path), line
    assert reason in m["reason"], line
    assert m["fix"].strip()


def test_fix_hints_are_specific() -> None:
    spec = (
        "from: [iot]\nto: [trusted]\n"
        "services: [ipp._tcp, _ipp, _printer._sub._http._tcp]\nreflct: true"
    )
    text = "\n".join(problems_of(doc("bad", spec)))
    assert "did you mean 'reflect'?" in text
    assert "write '_ipp._tcp'" in text
    assert "add the protocol: '_ipp._tcp' or '_ipp._udp'" in text
    assert "use the parent type '_http._tcp'" in text
    assert "quote it" in problems_of(doc("b", "from: [on]\nto: [iot]\nservices: ['*']"))[0]


def test_top_level_errors() -> None:
    lines = problems_of(
        doc("x", "from: [iot]\nto: [trusted]\nservices: ['*']", api="mdnsgateway.io/v1")
        + "---\nkind: Foo\n---\n- a list\n---\napiVersion: mdnsgateway.io/v1alpha1\n"
        "kind: ServicePolicy\nmetadata: {name: Bad_Name, uid: '1'}\n"
        "spec: {from: [iot], to: [iot], services: ['*']}\nstatuses: {}\n"
    )
    text = "\n".join(lines)
    assert "document 1 (x): apiVersion: unsupported string 'mdnsgateway.io/v1'" in text
    assert "document 2 (unnamed): kind: unsupported kind string 'Foo'" in text
    assert "document 2 (unnamed): metadata: required field is missing" in text
    assert "document 2 (unnamed): spec: required field is missing" in text
    assert "document 3 (unnamed): (document): expected a mapping" in text
    assert "document 4 (Bad_Name): metadata.name: 'Bad_Name' is not a DNS-1123 name" in text
    assert "document 4 (Bad_Name): metadata.uid: unknown field 'uid'" in text
    assert "document 4 (Bad_Name): statuses: unknown field 'statuses'" in text
    assert all(ERROR_LINE.match(line) for line in lines), lines


def test_yaml_errors_name_the_document_and_line() -> None:
    text = doc("ok", "from: [iot]\nto: [trusted]\nservices: ['*']") + "---\nspec: {from: [iot\n"
    (line,) = problems_of(text)
    assert line.startswith("p.yaml: document 2 (unnamed): line ")
    assert "invalid YAML" in line and "fix:" in line
    (dup,) = problems_of(doc("d", "from: [iot]\nfrom: [guest]\nto: [trusted]\nservices: ['*']"))
    assert "found duplicate key 'from'" in dup and "document 1" in dup
    (alias,) = problems_of(doc("s", "from: [iot]\nto: [*]\nservices: ['*']"))
    assert "invalid YAML" in alias  # an unquoted * starts an alias


def test_hostile_yaml_is_a_policy_error() -> None:
    deep = "a: " + "[" * 5000 + "]" * 5000
    assert "document 1" in problems_of(deep)[0]
    binary = "\x00\x01"
    assert problems_of(binary)
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    assert problems_of(laughs)  # shared references are not expanded


def test_duplicate_names_in_one_file() -> None:
    spec = "from: [iot]\nto: [trusted]\nservices: ['*']"
    (line,) = problems_of(doc("same", spec) + "---\n" + doc("same", spec))
    assert (
        "document 2 (same): metadata.name: 'same' is already used by same (p.yaml, document 1)"
        in line
    )


def test_all_problems_are_listed() -> None:
    lines = problems_of(
        doc("a", "from: [lab]\nto: [lab2]\nservices: [bad]\nhosts: 1")
        + "---\n"
        + doc("b", "from: [iot]\nto: [x]\nservices: ['*']")
    )
    paths = [ERROR_LINE.match(line)["path"] for line in lines]  # type: ignore[index]
    assert paths == ["spec.from[0]", "spec.to[0]", "spec.services[0]", "spec.hosts", "spec.to[0]"]


# ------------------------------------------------------------------------------------------------
# Directories
# ------------------------------------------------------------------------------------------------


def test_load_policy_dir_reads_sorted_yaml_skips_crd_and_hidden(tmp_path: Path) -> None:
    shutil.copy(ROOT / "policies" / "crd.yaml", tmp_path / "00-crd.yaml")
    (tmp_path / "b.yml").write_text(doc("b", "from: [iot]\nto: [guest]\nservices: ['*']"))
    (tmp_path / "a.yaml").write_text(doc("a", "from: [iot]\nto: [trusted]\nservices: ['*']"))
    (tmp_path / ".#a.yaml").write_text("garbage: [")
    (tmp_path / "notes.txt").write_text("garbage: [")
    (tmp_path / "sub.yaml").mkdir()
    policies = load_policy_dir(tmp_path, VLANS)
    assert [p.name for p in policies] == ["a", "b"]
    assert policies[0].source == (str(tmp_path / "a.yaml"), 1)


def test_load_policy_dir_lists_every_problem(tmp_path: Path) -> None:
    spec = "from: [iot]\nto: [trusted]\nservices: ['*']"
    (tmp_path / "a.yaml").write_text(
        doc("dup", spec) + "---\n" + doc("bad", "from: [lab]\nto: [iot]\nservices: ['*']")
    )
    (tmp_path / "b.yaml").write_text(doc("dup", spec))
    (tmp_path / "c.yaml").write_bytes(b"\xff\xfe")
    (tmp_path / "d.yaml").write_text("x: " + "y" * (policy_mod.MAX_FILE_BYTES + 1))
    with pytest.raises(PolicyError) as info:
        load_policy_dir(tmp_path, VLANS)
    text = str(info.value)
    assert len(info.value.problems) == 4
    assert f"{tmp_path / 'a.yaml'}: document 2 (bad): spec.from[0]: unknown VLAN 'lab'" in text
    assert (
        f"{tmp_path / 'b.yaml'}: document 1 (dup): metadata.name: "
        f"'dup' is already used by dup ({tmp_path / 'a.yaml'}, document 1)" in text
    )
    assert f"{tmp_path / 'c.yaml'}: not UTF-8 text" in text
    assert f"{tmp_path / 'd.yaml'}: file is " in text


def test_load_policy_dir_missing(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the policies directory"):
        load_policy_dir(tmp_path / "nope", VLANS)


def test_load_policy_dir_follows_configmap_symlinks(tmp_path: Path) -> None:
    data = tmp_path / "..2024_01_01"
    data.mkdir()
    (data / "p.yaml").write_text(doc("cm", "from: [iot]\nto: [trusted]\nservices: ['*']"))
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "p.yaml").symlink_to("..data/p.yaml")
    assert [p.name for p in load_policy_dir(tmp_path, VLANS)] == ["cm"]


def test_repo_policies_dir_loads() -> None:
    assert load_policy_dir(ROOT / "policies", VLANS) == []  # only the CRD at the top level
    assert len(load_policy_dir(ROOT / "policies" / "examples", VLANS)) == 8


def test_home_basic_example_semantics() -> None:
    policies = parse_policy_text(
        (ROOT / "policies/examples/home-basic.yaml").read_text(), "home-basic.yaml", VLANS
    )
    engine = PolicyEngine(policies, VLANS)
    trusted, iot, guest = (engine.view(v) for v in VLANS)
    for stype in ("_googlecast._tcp", "_airplay._tcp", "_ipp._tcp"):
        assert trusted.service_visible("iot", stype, "Anything")
    assert not trusted.service_visible("iot", "_ssh._tcp")
    for stype in ("_ipp._tcp", "_ssh._tcp", "_smb._tcp"):
        assert not iot.service_visible("trusted", stype)
        assert not guest.service_visible("trusted", stype)
    assert not iot.hosts_visible("trusted")
    assert guest.service_visible("iot", "_ipp._tcp", "Guest Printer")
    assert not guest.service_visible("iot", "_ipp._tcp", "Office Printer")
    assert not guest.service_visible("iot", "_googlecast._tcp")
    assert iot.vlans == {"iot"} and guest.vlans == {"guest", "iot"}


# ------------------------------------------------------------------------------------------------
# Property tests
# ------------------------------------------------------------------------------------------------

P_VLANS = ("a", "b", "c")
P_TYPES = ("_x._tcp", "_y._udp", "_z._tcp")
P_INSTANCES = ("Office Printer", "Guest TV", "guest tv.2", "Küche", "Living Room.tv", "x")
P_GLOBS = ("*", "*Guest*", "Office*", "*.tv", "?uest*", "*printer*", "K*", "x", "[gG]*")


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


@st.composite
def policies_strategy(draw: st.DrawFn) -> ServicePolicy:
    def subset(values: Sequence[str]) -> list[str]:
        return draw(st.lists(st.sampled_from((*values, ANY)), min_size=1, max_size=3, unique=True))

    return pol(
        f"p{draw(st.integers(0, 10**6))}",
        subset(P_VLANS),
        subset(P_VLANS),
        subset(P_TYPES),
        allow=draw(st.lists(st.sampled_from(P_GLOBS), min_size=1, max_size=2, unique=True)),
        deny=draw(st.lists(st.sampled_from(P_GLOBS[1:]), max_size=2, unique=True)),
        hosts=draw(st.booleans()),
        action=draw(st.sampled_from(("allow", "deny"))),
        reflect=draw(st.booleans()),
        wide_area=draw(st.booleans()),
    )


POLICY_SETS = st.lists(policies_strategy(), max_size=6)


def _covers(p: ServicePolicy, view: str, vlan: str, stype: str) -> bool:
    return (
        (ANY in p.from_vlans or vlan in p.from_vlans)
        and (ANY in p.to_vlans or view in p.to_vlans)
        and (ANY in p.services or stype in p.services)
    )


def _selects(p: ServicePolicy, instance: str) -> bool:
    name = _fold(instance)
    return any(fnmatch.fnmatchcase(name, _fold(g)) for g in p.instances_allow) and not any(
        fnmatch.fnmatchcase(name, _fold(g)) for g in p.instances_deny
    )


def _applies(p: ServicePolicy, view: str, vlan: str, stype: str, instance: str | None) -> bool:
    if not _covers(p, view, vlan, stype):
        return False
    if instance is None:  # a type: a deny hides it only if it denies every instance
        return p.action == "allow" or ("*" in p.instances_allow and not p.instances_deny)
    return _selects(p, instance)


def oracle(
    policies: Sequence[ServicePolicy], view: str, vlan: str, stype: str, inst: str | None, kind: str
) -> bool:
    """The issue's rules, written as plainly as possible."""
    if any(p.action == "deny" and _applies(p, view, vlan, stype, inst) for p in policies):
        return False
    if kind == "reflect" and vlan == view:
        return False
    allows = [p for p in policies if p.action == "allow" and _applies(p, view, vlan, stype, inst)]
    if kind == "reflect":
        allows = [p for p in allows if p.reflect]
    if kind == "wide_area":
        allows = [p for p in allows if p.wide_area]
    return (kind == "visible" and vlan == view) or bool(allows)


def oracle_hosts(policies: Sequence[ServicePolicy], view: str, vlan: str) -> bool:
    def pair(p: ServicePolicy) -> bool:
        return (ANY in p.from_vlans or vlan in p.from_vlans) and (
            ANY in p.to_vlans or view in p.to_vlans
        )

    if any(p.action == "deny" and p.hosts and pair(p) for p in policies):
        return False
    return vlan == view or any(p.action == "allow" and p.hosts and pair(p) for p in policies)


QUERIES = [
    (view, vlan, stype, inst)
    for view in P_VLANS
    for vlan in P_VLANS
    for stype in P_TYPES
    for inst in (None, *P_INSTANCES)
]

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(POLICY_SETS)
def test_property_engine_matches_the_plain_rules(policies: list[ServicePolicy]) -> None:
    engine = PolicyEngine(policies, P_VLANS)
    for view, vlan, stype, inst in QUERIES:
        vp = engine.view(view)
        assert vp.service_visible(vlan, stype, inst) == oracle(
            policies, view, vlan, stype, inst, "visible"
        )
        assert vp.reflect_visible(vlan, stype, inst) == oracle(
            policies, view, vlan, stype, inst, "reflect"
        )
        assert vp.wide_area_visible(vlan, stype, inst) == oracle(
            policies, view, vlan, stype, inst, "wide_area"
        )
        assert vp.service_visible(vlan, stype, inst) == oracle(
            policies, view, vlan, stype, inst, "visible"
        )  # memoised
    for view in P_VLANS:
        for vlan in P_VLANS:
            assert engine.view(view).hosts_visible(vlan) == oracle_hosts(policies, view, vlan)


@PROPERTY
@given(POLICY_SETS)
def test_property_a_deny_is_never_overridden(policies: list[ServicePolicy]) -> None:
    engine = PolicyEngine(policies, P_VLANS)
    for p in policies:
        if p.action != "deny":
            continue
        for view, vlan, stype, inst in QUERIES:
            if inst is not None and _covers(p, view, vlan, stype) and _selects(p, inst):
                vp = engine.view(view)
                assert not vp.service_visible(vlan, stype, inst), p
                assert not vp.reflect_visible(vlan, stype, inst), p
                assert not vp.wide_area_visible(vlan, stype, inst), p
                assert not engine.explain(view, vlan, f"{inst}.{stype}").visible
            if p.hosts and _covers(
                p, view, vlan, P_TYPES[0] if ANY in p.services else min(p.services)
            ):
                assert not engine.view(view).hosts_visible(vlan)


@PROPERTY
@given(POLICY_SETS)
def test_property_views_never_see_what_no_policy_allows(policies: list[ServicePolicy]) -> None:
    engine = PolicyEngine(policies, P_VLANS)
    for view, vlan, stype, inst in QUERIES:
        if view == vlan or inst is None:
            continue
        matching = [p for p in policies if _covers(p, view, vlan, stype) and _selects(p, inst)]
        if engine.view(view).service_visible(vlan, stype, inst):
            assert any(p.action == "allow" for p in matching)
            assert not any(p.action == "deny" for p in matching)
        if engine.view(view).reflect_visible(vlan, stype, inst):
            assert any(p.action == "allow" and p.reflect for p in matching)
        if engine.view(view).wide_area_visible(vlan, stype, inst):
            assert any(p.action == "allow" and p.wide_area for p in matching)
    for view in P_VLANS:
        for vlan in engine.view(view).vlans - {view}:
            assert any(
                p.action == "allow"
                and (ANY in p.from_vlans or vlan in p.from_vlans)
                and (ANY in p.to_vlans or view in p.to_vlans)
                for p in policies
            )


@PROPERTY
@given(POLICY_SETS, st.randoms(use_true_random=False))
def test_property_order_does_not_matter_and_explain_agrees(
    policies: list[ServicePolicy], rnd: object
) -> None:
    engine = PolicyEngine(policies, P_VLANS)
    shuffled = list(policies)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    other = PolicyEngine(shuffled, P_VLANS)
    for view, vlan, stype, inst in QUERIES[::3]:
        a, b = engine.view(view), other.view(view)
        assert a.service_visible(vlan, stype, inst) == b.service_visible(vlan, stype, inst)
        assert a.vlans == b.vlans
        service = stype if inst is None else f"{inst}.{stype}"
        exp = engine.explain(view, vlan, service)
        assert exp.visible == a.service_visible(vlan, stype, inst)
        assert exp.reflect == a.reflect_visible(vlan, stype, inst)
        assert exp.wide_area == a.wide_area_visible(vlan, stype, inst)
        assert exp.reasons and all(isinstance(r, str) for r in exp.reasons)


@PROPERTY
@given(POLICY_SETS)
def test_property_view_vlans_is_exact(policies: list[ServicePolicy]) -> None:
    """``vlans`` holds exactly the VLANs of which the view sees a type or the host names."""
    engine = PolicyEngine(policies, P_VLANS)
    for view in P_VLANS:
        vp = engine.view(view)
        seen = {
            vlan
            for vlan in P_VLANS
            if vp.hosts_visible(vlan)
            or any(vp.service_visible(vlan, t) for t in (*P_TYPES, "_other._tcp"))
        }
        assert vp.vlans == seen


SPEC_VALUES = st.fixed_dictionaries(
    {
        "from": st.lists(st.sampled_from((*VLANS, ANY)), min_size=1, max_size=3, unique=True),
        "to": st.lists(st.sampled_from((*VLANS, ANY)), min_size=1, max_size=3, unique=True),
        "services": st.lists(
            st.sampled_from(("_ipp._tcp", "_IPP._tcp.local.", "_x-y_z._udp", "*")),
            min_size=1,
            max_size=3,
            unique=True,
        ),
    },
    optional={
        "instances": st.fixed_dictionaries(
            {},
            optional={
                "allow": st.lists(st.sampled_from(P_GLOBS), min_size=1, max_size=3, unique=True),
                "deny": st.lists(st.sampled_from(P_GLOBS), max_size=3, unique=True),
            },
        ),
        "hosts": st.booleans(),
        "action": st.just("allow"),
        "reflect": st.booleans(),
        "wideArea": st.booleans(),
    },
)


@settings(max_examples=100, deadline=None)
@given(SPEC_VALUES)
def test_property_valid_documents_round_trip(spec: dict[str, Any]) -> None:
    import yaml

    text = yaml.safe_dump(
        {
            "apiVersion": policy_mod.API_VERSION,
            "kind": "ServicePolicy",
            "metadata": {"name": "n"},
            "spec": spec,
        }
    )
    (p,) = parse_policy_text(text, "r.yaml", VLANS)
    assert p.from_vlans == frozenset(spec["from"])
    assert p.to_vlans == frozenset(spec["to"])
    assert p.services == {normalize_service_type(s) for s in spec["services"]}
    inst = spec.get("instances") or {}
    assert p.instances_allow == tuple(inst.get("allow", ["*"]))
    assert p.instances_deny == tuple(inst.get("deny", []))
    assert p.hosts == spec.get("hosts", False)
    assert p.reflect == spec.get("reflect", False)
    assert p.wide_area == spec.get("wideArea", False)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8) | st.sampled_from(VLANS),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(("apiVersion", "kind", "metadata", "spec", "extra")), JSONISH, max_size=5
    ),
    st.dictionaries(st.sampled_from(policy_mod._SPEC_KEYS), JSONISH, max_size=8),
)
def test_property_parser_never_crashes(top: dict[str, object], spec: dict[str, object]) -> None:
    import yaml

    top = {**top, "spec": spec} if spec else top
    text = yaml.safe_dump(top)
    try:
        parse_policy_text(text, "f.yaml", VLANS)
    except PolicyError as exc:
        assert exc.problems
        assert all(line.startswith("f.yaml: ") and "; fix: " in line for line in exc.problems)


# ------------------------------------------------------------------------------------------------
# Hot reload (bridge/policy/watch.py)
# ------------------------------------------------------------------------------------------------


def _write(directory: Path, name: str, policy: str, spec: str) -> Path:
    path = directory / name
    path.write_text(doc(policy, spec))
    return path


IPP = "from: [iot]\nto: [trusted]\nservices: [_ipp._tcp]"
AIRPLAY = "from: [iot]\nto: [trusted]\nservices: [_airplay._tcp]"


async def _until(condition: Callable[[], object], timeout: float = 5.0) -> float:
    """Wait until ``condition()`` is true; returns the seconds it took. Fails after ``timeout``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        if loop.time() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)
    return loop.time() - start


PolicyWatcherArgs = tuple[Callable[[PolicyEngine], None], Callable[[str], None]]


def _recorder() -> tuple[list[PolicyEngine], list[str], PolicyWatcherArgs]:
    changes: list[PolicyEngine] = []
    errors: list[str] = []
    return changes, errors, (changes.append, errors.append)


def test_watcher_applies_changes_and_keeps_the_last_good_policies(tmp_path: Path) -> None:
    async def main() -> None:
        _write(tmp_path, "a.yaml", "printers", IPP)
        changes, errors, callbacks = _recorder()
        watcher = PolicyWatcher(tmp_path, VLANS, *callbacks, interval=0.02)
        watcher.start()
        assert len(changes) == 1 and not errors  # loaded at start
        assert changes[0].view("trusted").service_visible("iot", "_ipp._tcp")

        _write(tmp_path, "a.yaml", "printers", AIRPLAY)
        took = await _until(lambda: len(changes) == 2)
        assert took < 2.0
        trusted = changes[1].view("trusted")
        assert trusted.service_visible("iot", "_airplay._tcp")
        assert not trusted.service_visible("iot", "_ipp._tcp")

        _write(tmp_path, "b.yaml", "bad", "from: [iot]\nto: [lab]\nservices: ['*']")
        await _until(lambda: errors)
        assert (
            f"{tmp_path / 'b.yaml'}: document 1 (bad): spec.to[0]: unknown VLAN 'lab'" in errors[0]
        )
        assert watcher.engine is changes[1]  # the last good policies stay in force

        _write(tmp_path, "b.yaml", "good", "from: [iot]\nto: [guest]\nservices: ['*']")
        await _until(lambda: len(changes) == 3)
        assert changes[2].view("guest").service_visible("iot", "_ipp._tcp")
        assert len(errors) == 1
        assert (watcher.reloads, watcher.errors) == (3, 1)

        task = watcher._task
        await watcher.stop()
        assert task is not None and task.done()
        await watcher.stop()  # idempotent

    asyncio.run(main())


def test_watcher_reports_an_error_once_and_reload_now_again(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", "printers", IPP)
    changes, errors, callbacks = _recorder()
    watcher = PolicyWatcher(tmp_path, VLANS, *callbacks)
    assert watcher.reload_now() and len(changes) == 1
    (tmp_path / "a.yaml").write_text("spec: [")
    for _ in range(6):
        watcher.poll()
    assert len(errors) == 1 and "invalid YAML" in errors[0]
    assert not watcher.reload_now()  # SIGHUP: reports again
    assert len(errors) == 2
    assert watcher.engine is changes[0]


def test_watcher_says_valid_again_when_a_rejected_edit_is_undone(tmp_path: Path) -> None:
    """Removing the bad file returns to the set in force: no new engine, but the caller must
    learn that the directory is valid again (else its "policy valid" stays 0 for good)."""
    _write(tmp_path, "a.yaml", "printers", IPP)
    changes, errors, callbacks = _recorder()
    watcher = PolicyWatcher(tmp_path, VLANS, *callbacks)
    assert watcher.reload_now() and len(changes) == 1
    bad = _write(tmp_path, "b.yaml", "bad", "from: [iot]\nto: [lab]\nservices: ['*']")
    watcher.poll()
    assert not watcher.poll() and len(errors) == 1
    bad.unlink()
    watcher.poll()  # by polling: back to the signature in force
    assert changes == [changes[0], changes[0]]
    watcher.poll()
    assert len(changes) == 2  # once
    _write(tmp_path, "b.yaml", "bad", "from: [iot]\nto: [lab]\nservices: ['*']")
    assert not watcher.reload_now() and len(errors) == 2
    bad.unlink()
    assert watcher.reload_now()  # by SIGHUP
    assert changes == [changes[0]] * 3 and watcher.engine is changes[0]
    assert watcher.reload_now() and len(changes) == 3  # nothing to recover from


def test_watcher_waits_for_a_settled_directory(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", "printers", IPP)
    changes, errors, callbacks = _recorder()
    watcher = PolicyWatcher(tmp_path, VLANS, *callbacks)
    watcher.reload_now()
    (tmp_path / "a.yaml").write_text(doc("printers", IPP)[:40])  # caught half written
    assert not watcher.poll()  # seen, not loaded yet
    _write(tmp_path, "a.yaml", "printers", AIRPLAY)  # the writer finishes
    assert not watcher.poll()
    assert watcher.poll()
    assert not errors and len(changes) == 2


def test_watcher_ignores_touches_and_equal_content(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.yaml", "printers", IPP)
    first = PolicyEngine(load_policy_dir(tmp_path, VLANS), VLANS)
    changes, errors, callbacks = _recorder()
    watcher = PolicyWatcher(tmp_path, VLANS, *callbacks, engine=first)
    watcher.poll()
    watcher.poll()
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    watcher.poll()
    watcher.poll()
    assert changes == [] and errors == []
    assert watcher.engine is first


def test_watcher_sees_same_size_rewrite_within_one_timestamp_tick(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "a.yaml", "printers", "from: [iot]\nto: [trusted]\nservices: [_aaa._tcp]"
    )
    changes, errors, callbacks = _recorder()
    watcher = PolicyWatcher(tmp_path, VLANS, *callbacks)
    watcher.reload_now()
    before = path.stat()
    path.write_text(doc("printers", "from: [iot]\nto: [trusted]\nservices: [_bbb._tcp]"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    watcher.poll()
    assert watcher.poll()
    assert changes[-1].view("trusted").service_visible("iot", "_bbb._tcp")
    assert not errors


def test_watcher_follows_a_configmap_swap(tmp_path: Path) -> None:
    for version, spec in (("..v1", IPP), ("..v2", AIRPLAY)):
        (tmp_path / version).mkdir()
        _write(tmp_path / version, "p.yaml", "cm", spec)
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "p.yaml").symlink_to("..data/p.yaml")
    changes, errors, callbacks = _recorder()
    watcher = PolicyWatcher(tmp_path, VLANS, *callbacks)
    watcher.reload_now()
    (tmp_path / "..data_tmp").symlink_to("..v2")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")  # how the kubelet swaps
    watcher.poll()
    assert watcher.poll()
    assert changes[-1].view("trusted").service_visible("iot", "_airplay._tcp")
    assert not errors


def test_watcher_file_and_directory_removal(tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    directory.mkdir()
    _write(directory, "a.yaml", "a", IPP)
    _write(directory, "b.yaml", "b", AIRPLAY)
    changes, errors, callbacks = _recorder()
    watcher = PolicyWatcher(directory, VLANS, *callbacks)
    watcher.reload_now()
    (directory / "b.yaml").unlink()
    watcher.poll()
    assert watcher.poll()
    assert [p.name for p in changes[-1].policies] == ["a"]
    shutil.rmtree(directory)
    watcher.poll()
    assert not watcher.poll()
    assert "cannot read the policies directory" in errors[-1]
    assert watcher.engine is changes[-1]


def test_watcher_survives_failing_callbacks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(_: object) -> None:
        raise RuntimeError("callback bug")

    _write(tmp_path, "a.yaml", "a", IPP)
    watcher = PolicyWatcher(tmp_path, VLANS, boom, boom)
    assert watcher.reload_now()
    (tmp_path / "a.yaml").write_text("spec: [")
    assert not watcher.reload_now()
    assert "callback bug" in caplog.text
    _write(tmp_path, "a.yaml", "a", AIRPLAY)
    assert watcher.reload_now()
    assert watcher.engine is not None
    assert watcher.engine.view("trusted").service_visible("iot", "_airplay._tcp")


def test_watcher_start_without_policies_dir_reports_and_has_no_engine(tmp_path: Path) -> None:
    async def main() -> None:
        changes, errors, callbacks = _recorder()
        watcher = PolicyWatcher(tmp_path / "none", VLANS, *callbacks, interval=0.01)
        watcher.start()
        assert watcher.engine is None and len(errors) == 1
        (tmp_path / "none").mkdir()
        _write(tmp_path / "none", "a.yaml", "a", IPP)
        await _until(lambda: changes)
        await watcher.stop()

    asyncio.run(main())
    with pytest.raises(ValueError):
        PolicyWatcher(tmp_path, VLANS, print, print, interval=0)


def test_engine_build_stays_fast_with_many_vlans_and_star_policies() -> None:
    vlans = [f"v{i}" for i in range(policy_mod.MAX_VLANS_PER_LIST)]
    policies = [pol(f"p{i}", [ANY], [ANY], [f"_s{i % 50}._tcp"]) for i in range(1024)]
    start = time.perf_counter()
    engine = PolicyEngine(policies, vlans)
    assert time.perf_counter() - start < 2.0  # ~15 ms here; per-pair rebuilding took seconds
    assert engine.view("v1").service_visible("v2", "_s3._tcp")
    assert engine.view("v1").vlans == frozenset(vlans)
