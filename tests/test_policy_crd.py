"""The CRD (policies/crd.yaml), the examples and the loader agree.

The CRD's openAPIV3Schema is checked with jsonschema the way the Kubernetes API server applies it
to a ServicePolicy with strict field validation (kubectl's default):

* null values of fields are pruned before validation (the fields are not ``nullable``);
* unknown fields are errors (strict field validation) rather than silently pruned;
* ``x-kubernetes-list-type: set`` lists may not hold duplicates;
* ``apiVersion`` and ``kind`` must name the resource's endpoint, ``metadata.name`` is required;
* patterns are RE2: ``$`` matches only at the very end.

``metadata`` is ObjectMeta; the gateway accepts the part of it that belongs in a policy file
(name, namespace, labels, annotations).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import bridge.policy.model as policy_mod
from bridge.policy import API_VERSION, KIND, PolicyError, load_policy_dir, parse_policy_text

ROOT = Path(__file__).resolve().parent.parent
CRD_PATH = ROOT / "policies" / "crd.yaml"
EXAMPLES = sorted((ROOT / "policies" / "examples").glob("*.yaml"))
VLANS = ("trusted", "iot", "guest")

CRD: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
VERSION: dict[str, Any] = CRD["spec"]["versions"][0]
SCHEMA: dict[str, Any] = VERSION["schema"]["openAPIV3Schema"]
SPEC_SCHEMA: dict[str, Any] = SCHEMA["properties"]["spec"]

OBJECT_META: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "namespace": {
            "type": "string",
            "maxLength": 63,
            "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        },
        "labels": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "maxProperties": 64,
        },
        "annotations": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "maxProperties": 64,
        },
    },
}


# ------------------------------------------------------------------------------------------------
# The API server, emulated
# ------------------------------------------------------------------------------------------------


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Strict field validation and list-type sets, made explicit for jsonschema."""
    out = dict(schema)
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["properties"] = {k: _strict(v) for k, v in out["properties"].items()}
        if "type" in out:  # not inside a junctor (allOf/not) where fields are only referenced
            out.setdefault("additionalProperties", False)
    if "items" in out:
        out["items"] = _strict(out["items"])
    if out.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    for junctor in ("allOf", "anyOf", "oneOf"):
        if junctor in out:
            out[junctor] = [_strict(s) for s in out[junctor]]
    if "not" in out:
        out["not"] = _strict(out["not"])
    return out


def _api_server_schema() -> dict[str, Any]:
    schema = _strict(copy.deepcopy(SCHEMA))
    meta = copy.deepcopy(OBJECT_META)
    meta["properties"]["name"] = SCHEMA["properties"]["metadata"]["properties"]["name"]
    meta["additionalProperties"] = False
    schema["properties"]["metadata"] = meta
    schema["properties"]["apiVersion"] = {"type": "string", "enum": [API_VERSION]}
    schema["properties"]["kind"] = {"type": "string", "enum": [KIND]}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return schema


def _re2_pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if isinstance(instance, str):
        rx = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
        if not re.search(rx, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


ApiServerValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"pattern": _re2_pattern}
)
API_SERVER = ApiServerValidator(_api_server_schema())


def _prune_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


def api_server_errors(document: Any) -> list[str]:
    """With the status subresource, a create or update through the main endpoint drops
    ``status`` before validating (only ``/status`` writes it)."""
    if isinstance(document, dict):
        document = {k: v for k, v in document.items() if k != "status"}
    return [e.message for e in API_SERVER.iter_errors(_prune_nulls(document))]


def loader_errors(document: Any, vlans: tuple[str, ...] = VLANS) -> list[str]:
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        parse_policy_text(text, "doc.yaml", vlans)
    except PolicyError as exc:
        return list(exc.problems)
    return []


# ------------------------------------------------------------------------------------------------
# The CRD itself
# ------------------------------------------------------------------------------------------------


def test_crd_identity() -> None:
    assert CRD["apiVersion"] == "apiextensions.k8s.io/v1"
    assert CRD["kind"] == "CustomResourceDefinition"
    spec = CRD["spec"]
    assert spec["group"] == "mdnsgateway.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == KIND
    assert CRD["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
    assert [v["name"] for v in spec["versions"]] == ["v1alpha1"]
    assert VERSION["served"] is True and VERSION["storage"] is True
    assert f"{spec['group']}/{VERSION['name']}" == API_VERSION


_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
_FORBIDDEN_IN_JUNCTORS = ("type", "description", "default", "additionalProperties", "nullable")


def _walk(
    schema: dict[str, Any], path: str, in_junctor: bool
) -> Iterator[tuple[str, dict[str, Any], bool]]:
    yield path, schema, in_junctor
    for key, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.properties.{key}", in_junctor)
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}.items", in_junctor)
    for junctor in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(schema.get(junctor, [])):
            yield from _walk(sub, f"{path}.{junctor}[{i}]", True)
    if "not" in schema:
        yield from _walk(schema["not"], f"{path}.not", True)


def test_crd_schema_is_structural() -> None:
    """The rules the API server applies to a CRD's schema (structural schemas)."""
    for path, node, in_junctor in _walk(SCHEMA, "openAPIV3Schema", False):
        if in_junctor:
            for key in _FORBIDDEN_IN_JUNCTORS:
                assert key not in node, f"{path}: {key} is not allowed inside a junctor"
            continue
        assert "type" in node, f"{path}: every node specifies a type"
        assert "$ref" not in node and "uniqueItems" not in node, path
        assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("type") == "array":
            assert "items" in node, path
        if node.get("x-kubernetes-list-type") == "set":
            assert node["items"]["type"] in ("string", "integer", "boolean", "number"), path
        if node.get("x-kubernetes-list-type") == "map":  # keys: required scalar fields
            assert node["items"]["type"] == "object", path
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in node["items"]["required"], f"{path}: map key {key} not required"
                assert node["items"]["properties"][key]["type"] == "string", path
        if "pattern" in node:
            re.compile(node["pattern"])
            assert node["pattern"].startswith("^") and node["pattern"].endswith("$"), path
        if "default" in node:
            errors = list(ApiServerValidator(_strict(node)).iter_errors(node["default"]))
            assert not errors, f"{path}: default does not validate: {errors}"
    # a field named inside a junctor is specified outside it (completeness)
    for i, junctor in enumerate(SPEC_SCHEMA.get("allOf", [])):
        for key in junctor["not"].get("properties", {}):
            assert key in SPEC_SCHEMA["properties"], f"allOf[{i}]: {key}"
    # metadata: only restrictions on name; apiVersion and kind: strings
    meta = SCHEMA["properties"]["metadata"]
    assert set(meta) <= {"type", "properties"} and set(meta["properties"]) == {"name"}
    assert SCHEMA["properties"]["apiVersion"]["type"] == "string"
    assert SCHEMA["properties"]["kind"]["type"] == "string"
    assert SCHEMA["required"] == ["spec"]
    assert VERSION["subresources"] == {"status": {}}
    accepted = [c for c in VERSION["additionalPrinterColumns"] if c["name"] == "Accepted"]
    assert accepted[0]["jsonPath"] == (
        '.status.gateways[*].conditions[?(@.type=="Accepted")].status'
    )
    assert sorted(SPEC_SCHEMA["required"]) == ["from", "services", "to"]


def test_crd_and_loader_share_patterns_limits_enums_and_defaults() -> None:
    props = SPEC_SCHEMA["properties"]
    for key in ("from", "to"):
        assert props[key]["items"]["pattern"] == policy_mod.VLAN_PATTERN
        assert props[key]["items"]["maxLength"] == policy_mod.MAX_VLAN_NAME_LENGTH
        assert props[key]["maxItems"] == policy_mod.MAX_VLANS_PER_LIST
        assert props[key]["minItems"] == 1
    assert props["services"]["items"]["pattern"] == policy_mod.SERVICE_PATTERN
    assert props["services"]["items"]["maxLength"] == policy_mod.MAX_SERVICE_LENGTH
    assert props["services"]["maxItems"] == policy_mod.MAX_SERVICES_PER_POLICY
    inst = props["instances"]["properties"]
    for key in ("allow", "deny"):
        assert inst[key]["items"]["pattern"] == policy_mod.GLOB_PATTERN
        assert inst[key]["items"]["maxLength"] == policy_mod.MAX_GLOB_LENGTH
        assert inst[key]["maxItems"] == policy_mod.MAX_GLOBS
    assert inst["allow"]["default"] == ["*"] and inst["allow"]["minItems"] == 1
    assert inst["deny"]["default"] == []
    assert props["action"]["enum"] == ["allow", "deny"] and props["action"]["default"] == "allow"
    for key in ("hosts", "reflect", "wideArea"):
        assert props[key] == {**props[key], "type": "boolean", "default": False}
    assert set(props) == set(policy_mod._SPEC_KEYS)
    assert set(inst) == set(policy_mod._INSTANCE_KEYS)
    name = SCHEMA["properties"]["metadata"]["properties"]["name"]
    assert name["pattern"] == policy_mod.NAME_PATTERN
    assert name["maxLength"] == policy_mod.MAX_NAME_LENGTH
    # the defaults of the schema are the defaults of ServicePolicy
    p = policy_mod.ServicePolicy("n", ("f", 1), frozenset(), frozenset(), frozenset())
    assert list(p.instances_allow) == inst["allow"]["default"]
    assert list(p.instances_deny) == inst["deny"]["default"]
    assert p.action == props["action"]["default"]
    assert (p.hosts, p.reflect, p.wide_area) == (False, False, False)


# ------------------------------------------------------------------------------------------------
# Examples
# ------------------------------------------------------------------------------------------------


def test_there_are_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {
        "home-basic.yaml",
        "printers-for-everyone.yaml",
        "airplay-chromecast-into-trusted.yaml",
        "deny-examples.yaml",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_crd_and_loads(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents
    for document in documents:
        assert api_server_errors(document) == [], document["metadata"]["name"]
    policies = parse_policy_text(path.read_text(), str(path), VLANS)
    assert len(policies) == len(documents)


def test_examples_load_together() -> None:
    policies = load_policy_dir(ROOT / "policies" / "examples", VLANS)
    assert len({p.name for p in policies}) == len(policies)


# ------------------------------------------------------------------------------------------------
# Agreement on good and bad documents
# ------------------------------------------------------------------------------------------------


def base(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "p"},
        "spec": {"from": ["iot"], "to": ["trusted"], "services": ["_ipp._tcp"], **spec},
    }


def with_(path: str, value: Any) -> dict[str, Any]:
    """``base()`` with one field set (``"spec.instances.allow"``); ``...`` deletes it."""
    document = base()
    *parents, last = path.split(".")
    node = document
    for key in parents:
        node = node.setdefault(key, {})
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    return document


GOOD = {
    "minimal": base(),
    # the status subresource: the main endpoint drops status, whatever it holds
    "status-dropped": with_("status", {"gateways": "not a list"}),
    "every-field": base(
        instances={"allow": ["*Printer*"], "deny": ["*Guest*"]},
        hosts=True,
        action="allow",
        reflect=True,
        wideArea=True,
    ),
    "stars": base(**{"from": ["*"], "to": ["*"], "services": ["*"]}),
    "deny": base(action="deny", hosts=True),
    "deny-reflect-false": base(action="deny", reflect=False, wideArea=False),
    "null-optionals": base(instances=None, hosts=None, action=None, reflect=None),
    "empty-instances": base(instances={}),
    "empty-deny": base(instances={"deny": []}),
    "service-spellings": base(services=["_IPP._TCP", "_ipp._tcp.local.", "_x_y-z._udp."]),
    "namespace-labels": with_(
        "metadata", {"name": "p.q", "namespace": "home", "labels": {"a": "b"}}
    ),
    "unicode-glob": base(instances={"allow": ["Küche*", "*[Tt]v?"]}),
}

BAD = {
    "api-version": with_("apiVersion", "mdnsgateway.io/v1"),
    "no-api-version": with_("apiVersion", ...),
    "kind": with_("kind", "Policy"),
    "no-metadata": with_("metadata", ...),
    "no-name": with_("metadata", {"namespace": "x"}),
    "bad-name": with_("metadata.name", "Bad_Name"),
    "long-name": with_("metadata.name", "a" * 254),
    "unknown-metadata": with_("metadata.owner", "me"),
    "unknown-top": with_("statuses", {}),
    "no-spec": with_("spec", ...),
    "spec-list": with_("spec", ["iot"]),
    "no-from": with_("spec.from", ...),
    "null-from": with_("spec.from", None),
    "from-string": with_("spec.from", "iot"),
    "from-empty": with_("spec.from", []),
    "from-dup": with_("spec.from", ["iot", "iot"]),
    "from-bool": with_("spec.from", [False]),
    "from-number": with_("spec.from", [10]),
    "from-space": with_("spec.from", ["a b"]),
    "from-dash": with_("spec.from", ["-iot"]),
    "from-long": with_("spec.from", ["a" * 64]),
    "from-many": with_("spec.from", [f"v{i}" for i in range(65)]),
    "to-null-item": with_("spec.to", [None]),
    "services-missing": with_("spec.services", ...),
    "services-empty": with_("spec.services", []),
    "services-no-underscore": with_("spec.services", ["ipp._tcp"]),
    "services-no-proto": with_("spec.services", ["_ipp"]),
    "services-sctp": with_("spec.services", ["_ipp._sctp"]),
    "services-subtype": with_("spec.services", ["_printer._sub._http._tcp"]),
    "services-instance": with_("spec.services", ["My Printer._ipp._tcp"]),
    "services-double-star": with_("spec.services", ["**"]),
    "services-dup": with_("spec.services", ["_ipp._tcp", "_ipp._tcp"]),
    "services-newline": with_("spec.services", ["_ipp._tcp\n"]),
    "instances-list": with_("spec.instances", ["*"]),
    "instances-unknown": with_("spec.instances", {"alow": ["*"]}),
    "instances-allow-empty": with_("spec.instances", {"allow": []}),
    "instances-allow-string": with_("spec.instances", {"allow": "*"}),
    "instances-glob-empty": with_("spec.instances", {"deny": [""]}),
    "instances-glob-control": with_("spec.instances", {"deny": ["a\tb"]}),
    "instances-glob-long": with_("spec.instances", {"deny": ["x" * 256]}),
    "instances-glob-dup": with_("spec.instances", {"deny": ["*a*", "*a*"]}),
    "hosts-string": with_("spec.hosts", "true"),
    "reflect-number": with_("spec.reflect", 1),
    "action-case": with_("spec.action", "Deny"),
    "action-other": with_("spec.action", "block"),
    "deny-reflect": base(action="deny", reflect=True),
    "deny-wide-area": base(action="deny", wideArea=True),
    "unknown-spec": with_("spec.reflct", True),
    "wide_area-spelling": with_("spec.wide_area", True),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_documents_accepted_by_both(name: str) -> None:
    document = GOOD[name]
    assert api_server_errors(document) == []
    assert loader_errors(document) == []


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_documents_rejected_by_both(name: str) -> None:
    document = BAD[name]
    assert api_server_errors(document), "the CRD schema accepts it"
    errors = loader_errors(document)
    assert errors, "the loader accepts it"
    for line in errors:
        assert line.startswith("doc.yaml: document 1 (") and "; fix: " in line, line


def test_unknown_vlan_is_the_loaders_own_check() -> None:
    document = with_("spec.from", ["lab"])
    assert api_server_errors(document) == []  # the API server does not know the gateway's VLANs
    (line,) = loader_errors(document)
    assert "spec.from[0]: unknown VLAN 'lab'" in line


# Generated documents: a valid policy, then up to three edits, each valid or not.
_VLAN_VALUES = [
    "trusted",
    "iot",
    "guest",
    "*",
    "",
    "a b",
    "-x",
    "x" * 64,
    "tr/usted",
    7,
    True,
    None,
]
_SERVICE_VALUES = [
    "_ipp._tcp", "_IPP._tcp.local.", "*", "_a._udp.", "_x_y-z._tcp",
    "ipp", "_ipp", "_x._sub._y._tcp", "", "_ipp._tcp\n", 3,
]  # fmt: skip
_GLOB_VALUES = ["*", "*Guest*", "K?che", "[Tt]v", "", "a\x01", "x" * 256, 0, None]
_LIST_FIELDS = {
    "spec.from": _VLAN_VALUES,
    "spec.to": _VLAN_VALUES,
    "spec.services": _SERVICE_VALUES,
    "spec.instances.allow": _GLOB_VALUES,
    "spec.instances.deny": _GLOB_VALUES,
}
_SCALAR_EDITS: list[tuple[str, Any]] = [
    *(
        (f"spec.{k}", v)
        for k in ("hosts", "reflect", "wideArea")
        for v in (True, False, None, "true", 0)
    ),
    *(("spec.action", v) for v in ("allow", "deny", "Allow", None, 1)),
    ("spec.instances", None),
    ("spec.instances", {}),
    ("spec.instances", ["*"]),
    ("spec.instances", "*"),
    *(("spec", v) for v in (None, "x")),
    *(
        (k, ...)
        for k in ("spec.from", "spec.to", "spec.services", "metadata", "apiVersion", "kind")
    ),
    *(("apiVersion", v) for v in ("mdnsgateway.io/v1", 1)),
    *(("kind", v) for v in ("Foo", "CustomResourceDefinitions")),
    *(("metadata.name", v) for v in ("a.b-c", "Bad", "", None, "a" * 254, 5)),
    *(("metadata.namespace", v) for v in ("home", "Home", None)),
    *(("metadata.labels", v) for v in ({"a": "b"}, {"a": 1}, "x")),
    ("metadata.uid", "1"),
    ("status", {}),
    ("spec.wide_area", True),
    ("spec.instances.other", 1),
]


def _set(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = document
    for key in parents:
        if not isinstance(node, dict):
            return
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    if not isinstance(node, dict):
        return
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value


def _get(document: dict[str, Any], path: str) -> Any:
    node: Any = document
    for key in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


@st.composite
def _documents(draw: st.DrawFn) -> dict[str, Any]:
    def some(values: list[str]) -> list[str]:
        return draw(st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True))

    document = base(**{"from": some(["trusted", "iot", "*"]), "to": some(["guest", "iot", "*"])})
    document["spec"]["services"] = some(["_ipp._tcp", "_googlecast._tcp", "*"])
    if draw(st.booleans()):
        document["spec"]["instances"] = {"allow": some(["*", "*TV*"]), "deny": []}
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            path, value = draw(st.sampled_from(_SCALAR_EDITS))
            _set(document, path, copy.deepcopy(value))
            continue
        path = draw(st.sampled_from(sorted(_LIST_FIELDS)))
        value = draw(st.sampled_from(_LIST_FIELDS[path]))
        current = _get(document, path)
        how = draw(st.sampled_from(["append", "replace", "empty", "scalar"]))
        if how == "append" and isinstance(current, list):
            _set(document, path, [*current, value])
        elif how == "replace":
            _set(document, path, [value])
        elif how == "empty":
            _set(document, path, [])
        else:
            _set(document, path, value)
    return document


_SEEN: dict[tuple[bool, bool], int] = {}


@settings(max_examples=600, deadline=None)
@given(_documents())
def test_property_loader_and_crd_schema_agree(document: dict[str, Any]) -> None:
    schema_errors = api_server_errors(document)
    errors = loader_errors(document)
    key = (not schema_errors, not errors)
    _SEEN[key] = _SEEN.get(key, 0) + 1
    assert bool(schema_errors) == bool(errors), (document, schema_errors, errors)


def test_property_generator_covers_both_outcomes() -> None:
    """The agreement property saw valid and invalid documents (it runs first, by file order)."""
    if not _SEEN:
        pytest.skip("run together with test_property_loader_and_crd_schema_agree")
    assert _SEEN.get((True, True), 0) > 20, _SEEN
    assert _SEEN.get((False, False), 0) > 20, _SEEN
