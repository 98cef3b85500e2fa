"""ServicePolicy resources -> one compiled, pure visibility engine.

Every surface asks the same engine: the record cache (what a view may see), the DNS resolver
(``.local``, wide-area, browse domains, ``_services._dns-sd._udp`` enumeration), the reflector
(``reflect: true`` policies) and the wide-area publisher (``wideArea: true`` policies).

Semantics (issue 3):

* A VLAN sees its own services by default. Nothing crosses VLANs unless an *allow* policy matches:
  ``from`` holds the service's VLAN (or ``"*"``), ``to`` holds the asking view (or ``"*"``),
  ``services`` holds the service type (or ``"*"``) and the instance is selected by ``instances``
  (it matches an ``allow`` glob, default ``["*"]``, and no ``deny`` glob).
* A matching *deny* policy wins over every allow, including the own-VLAN default. ``instances`` of
  a deny policy selects the instances it denies. A deny with ``hosts: true`` also hides the plain
  host names (A/AAAA) of its ``from`` VLANs.
* Globs are fnmatch-style (``*``, ``?``, ``[seq]``), case-insensitive, on the decoded instance
  label.
* Subtypes (``_printer._sub._http._tcp``) follow their parent type; callers pass the parent.
* The view ``"*"`` is the router itself: it sees everything.

This module does no I/O except :func:`load_policy_dir`, which reads the files it is given.
:class:`ViewPolicy` answers are precomputed per view and memoised per (VLAN, type) and, only when a
glob decides, per instance, in bounded dicts, so the hot path is one or two dict look-ups.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml

__all__ = [
    "ANY",
    "API_VERSION",
    "KIND",
    "Explanation",
    "PolicyEngine",
    "PolicyError",
    "ServicePolicy",
    "ViewPolicy",
    "default_engine",
    "load_policy_dir",
    "normalize_service_type",
    "parse_policy_text",
    "split_service_name",
]

API_VERSION: Final = "mdnsgateway.io/v1alpha1"
KIND: Final = "ServicePolicy"
CRD_KIND: Final = "CustomResourceDefinition"
ANY: Final = "*"

# --- Limits. Each mirrors the CRD schema in policies/crd.yaml (tests/test_policy_crd.py checks). --
#: bytes per policy file; a policy file is a few KiB, this stops a stray log or image being parsed
MAX_FILE_BYTES: Final = 1 << 20
#: policies per directory; bounds the engine's build time and memory on reload
MAX_POLICIES: Final = 4096
#: entries of ``from`` / ``to``; more VLANs than a router has
MAX_VLANS_PER_LIST: Final = 64
#: entries of ``services``; more types than a home network announces
MAX_SERVICES_PER_POLICY: Final = 256
#: entries of ``instances.allow`` / ``instances.deny``
MAX_GLOBS: Final = 64
#: characters of one glob; an instance label is at most 63 octets (RFC 6763 §4.1.1)
MAX_GLOB_LENGTH: Final = 255
#: characters of ``metadata.name`` (a DNS-1123 subdomain, as Kubernetes requires)
MAX_NAME_LENGTH: Final = 253
#: characters of a VLAN name
MAX_VLAN_NAME_LENGTH: Final = 63
#: characters of a service type as written (``_name._tcp`` plus an optional ``.local.``)
MAX_SERVICE_LENGTH: Final = 80
#: entries in ``metadata.labels`` / ``metadata.annotations``
MAX_META_ENTRIES: Final = 64
#: memoised (VLAN, type) decisions per view and question kind; FIFO eviction beyond it
MEMO_MAX_TYPES: Final = 4096
#: memoised (VLAN, type, instance) decisions per view and question kind; FIFO eviction beyond it
MEMO_MAX_INSTANCES: Final = 16384

# --- Patterns, shared with the CRD schema. Written for both Go RE2 (Kubernetes) and Python re. ---
VLAN_PATTERN: Final = r"^(\*|[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)$"
SERVICE_PATTERN: Final = (
    r"^(\*|_[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\._([Tt][Cc][Pp]|[Uu][Dd][Pp])"
    r"(\.[Ll][Oo][Cc][Aa][Ll])?\.?)$"
)
NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
GLOB_PATTERN: Final = r"^[^\x00-\x1F\x7F]+$"

_VLAN_RE: Final = re.compile(VLAN_PATTERN)
_SERVICE_RE: Final = re.compile(SERVICE_PATTERN)
_NAME_RE: Final = re.compile(NAME_PATTERN)
_GLOB_RE: Final = re.compile(GLOB_PATTERN)
_SUBTYPE_RE: Final = re.compile(r"^_[^.]+\._sub\.(_[^.]+\._(?:tcp|udp))$", re.IGNORECASE)

Action = Literal["allow", "deny"]

_TOP_KEYS: Final = ("apiVersion", "kind", "metadata", "spec")
_META_KEYS: Final = ("name", "namespace", "labels", "annotations")
_SPEC_KEYS: Final = (
    "from", "to", "services", "instances", "hosts", "action", "reflect", "wideArea",
)  # fmt: skip
_INSTANCE_KEYS: Final = ("allow", "deny")


class PolicyError(Exception):
    """Policy resources are invalid.

    ``str(error)`` is one line per problem, each
    ``"<file>: document <n> (<metadata.name>): <field path>: <reason>; fix: <hint>"``;
    :attr:`problems` holds the same lines.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True, slots=True)
class ServicePolicy:
    """One validated ServicePolicy resource, normalised.

    ``source`` is ``(file, document)`` with the document counted from 1 in its file.
    ``services`` holds lower-case types such as ``"_ipp._tcp"`` or ``"*"``; ``from_vlans`` and
    ``to_vlans`` hold configured VLAN names or ``"*"``.
    """

    name: str
    source: tuple[str, int]
    from_vlans: frozenset[str]
    to_vlans: frozenset[str]
    services: frozenset[str]
    instances_allow: tuple[str, ...] = (ANY,)
    instances_deny: tuple[str, ...] = ()
    hosts: bool = False
    action: Action = "allow"
    reflect: bool = False
    wide_area: bool = False

    @property
    def where(self) -> str:
        """``"name (file, document n)"``, for messages."""
        return f"{self.name} ({self.source[0]}, document {self.source[1]})"


# ------------------------------------------------------------------------------------------------
# Service names
# ------------------------------------------------------------------------------------------------


def normalize_service_type(text: str) -> str:
    """``"_IPP._tcp.local."`` -> ``"_ipp._tcp"``; ``"*"`` stays. Raises ValueError otherwise."""
    if len(text) <= MAX_SERVICE_LENGTH and _SERVICE_RE.fullmatch(text):
        return text if text == ANY else _strip_local(text.lower())
    raise ValueError(_service_reason(text))


def _strip_local(text: str) -> str:
    text = text.removesuffix(".")
    if text.lower().endswith(".local"):
        text = text[: -len(".local")]
    return text


def split_service_name(text: str) -> tuple[str, str | None]:
    """Split ``"My Printer._ipp._tcp"`` into ``("_ipp._tcp", "My Printer")``.

    A bare type gives ``(type, None)``; a subtype gives its parent type. A trailing ``.local.`` is
    dropped. The instance may hold spaces and dots; only the last two labels form the type.
    Raises ValueError when no ``_name._tcp`` / ``_name._udp`` type ends the name.
    """
    name = _strip_local(text.strip())
    sub = _SUBTYPE_RE.fullmatch(name)
    if sub:
        return normalize_service_type(sub.group(1)), None
    parts = name.rsplit(".", 2)
    if len(parts) == 3 and parts[1].startswith("_"):
        instance, stype = parts[0], f"{parts[1]}.{parts[2]}"
        if not instance:
            raise ValueError(f"{text!r} has an empty instance name")
    else:
        instance, stype = None, name
    try:
        return normalize_service_type(stype), instance
    except ValueError as exc:
        raise ValueError(
            f"{text!r} is neither a service type like '_ipp._tcp' nor an instance like "
            f"'My Printer._ipp._tcp' ({exc})"
        ) from None


def _service_reason(text: str) -> str:
    if len(text) > MAX_SERVICE_LENGTH:
        return f"longer than {MAX_SERVICE_LENGTH} characters"
    if _SUBTYPE_RE.fullmatch(_strip_local(text)):
        return f"{text!r} is a subtype; subtypes follow their parent type"
    return f"{text!r} is not a service type of the form '_name._tcp' or '_name._udp' (or \"*\")"


def _service_fix(text: str) -> str:
    bare = _strip_local(text)
    sub = _SUBTYPE_RE.fullmatch(bare)
    if sub:
        return f"use the parent type {sub.group(1).lower()!r}"
    if bare and not bare.startswith("_") and _SERVICE_RE.fullmatch("_" + bare):
        return f"service types start with '_': write {'_' + bare.lower()!r}"
    if re.fullmatch(r"_[A-Za-z0-9_-]+", bare):
        return f"add the protocol: {bare.lower() + '._tcp'!r} or {bare.lower() + '._udp'!r}"
    return "write a DNS-SD service type such as '_ipp._tcp', or \"*\" for every type"


# ------------------------------------------------------------------------------------------------
# Loading and validation
# ------------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys, as Kubernetes' YAML decoder does."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {_short(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value}"


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_QUOTE_HINT: Final = (
    "quote it; YAML reads unquoted yes/no/on/off/true/false as booleans and digits as numbers"
)


class _Doc:
    """Collects the problems of one document."""

    __slots__ = ("file", "index", "name", "problems")

    def __init__(self, file: str, index: int, problems: list[str]) -> None:
        self.file = file
        self.index = index
        self.name = "unnamed"
        self.problems = problems

    def add(self, path: str, reason: str, fix: str) -> None:
        self.problems.append(
            f"{self.file}: document {self.index} ({self.name}): {path}: {reason}; fix: {fix}"
        )

    def unknown_keys(self, path: str, value: Mapping[Any, Any], allowed: Sequence[str]) -> None:
        for key in value:
            if key not in allowed:
                sub = f"{path}.{key}" if path else str(key)
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "remove it"
                self.add(
                    sub,
                    f"unknown field {_short(key)}",
                    f"{hint} (allowed here: {', '.join(allowed)})",
                )


def parse_policy_text(text: str, filename: str, vlans: Collection[str]) -> list[ServicePolicy]:
    """Parse and validate the ServicePolicy documents of one YAML file.

    Validation follows the CRD schema in ``policies/crd.yaml`` (Kubernetes semantics: unknown
    fields, duplicate keys and duplicate list entries are errors, a null optional field counts as
    absent) and also checks that every VLAN named exists in ``vlans``. Empty documents are
    skipped, and so are CustomResourceDefinition documents, so the CRD may live beside the
    policies. Every problem of the file is collected; any problem raises :class:`PolicyError`.
    """
    policies, problems = _parse_text(text, filename, vlans)
    _check_unique_names(policies, problems)
    if problems:
        raise PolicyError(problems)
    return policies


def _parse_text(
    text: str, filename: str, vlans: Collection[str]
) -> tuple[list[ServicePolicy], list[str]]:
    """The valid policies of a file, and the problems of the others."""
    problems: list[str] = []
    policies: list[ServicePolicy] = []
    known = frozenset(vlans)
    index = 0
    try:
        for index, doc in enumerate(yaml.load_all(text, Loader=_StrictLoader), start=1):
            if doc is None:
                continue
            policy = _parse_document(doc, _Doc(filename, index, problems), known)
            if policy is not None:
                policies.append(policy)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark is not None else "yaml"
        reason = str(getattr(exc, "problem", None) or exc).strip()
        context = getattr(exc, "context", None)
        if context:
            reason = f"{reason} ({context})"
        doc_no = index + 1
        problems.append(
            f"{filename}: document {doc_no} (unnamed): {where}: invalid YAML: {reason}; "
            "fix: check indentation, quoting and that '---' separates documents"
        )
    except RecursionError:
        problems.append(
            f"{filename}: document {index + 1} (unnamed): yaml: nested too deeply; "
            "fix: a ServicePolicy is at most four levels deep"
        )
    return policies, problems


def _check_unique_names(policies: Sequence[ServicePolicy], problems: list[str]) -> None:
    first: dict[str, ServicePolicy] = {}
    for policy in policies:
        earlier = first.setdefault(policy.name, policy)
        if earlier is not policy:
            problems.append(
                f"{policy.source[0]}: document {policy.source[1]} ({policy.name}): metadata.name: "
                f"{policy.name!r} is already used by {earlier.where}; "
                "fix: give every policy a unique name"
            )


def _parse_document(raw: object, doc: _Doc, vlans: frozenset[str]) -> ServicePolicy | None:
    if not isinstance(raw, dict):
        doc.add(
            "(document)",
            f"expected a mapping with apiVersion, kind, metadata and spec, got {_type_name(raw)}",
            f"start the document with 'apiVersion: {API_VERSION}'",
        )
        return None
    kind = raw.get("kind")
    if kind == CRD_KIND:
        return None
    before = len(doc.problems)
    meta = raw.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("name"), str) and meta["name"]:
        doc.name = _short(meta["name"], 80).strip("'\"")
    doc.unknown_keys("", raw, _TOP_KEYS)

    api = raw.get("apiVersion")
    if api is None:
        doc.add("apiVersion", "required field is missing", f"add 'apiVersion: {API_VERSION}'")
    elif api != API_VERSION:
        doc.add("apiVersion", f"unsupported {_type_name(api)}", f"use {API_VERSION!r}")
    if kind is None:
        doc.add("kind", "required field is missing", f"add 'kind: {KIND}'")
    elif kind != KIND:
        doc.add(
            "kind",
            f"unsupported kind {_type_name(kind)}",
            f"this directory holds only {KIND} resources (and the CRD); use 'kind: {KIND}'",
        )
    name = _parse_metadata(meta, doc)
    spec = raw.get("spec")
    parsed = _parse_spec(spec, doc, vlans)
    if len(doc.problems) != before or name is None or parsed is None:
        return None
    return ServicePolicy(name=name, source=(doc.file, doc.index), **parsed)


def _parse_metadata(meta: object, doc: _Doc) -> str | None:
    if meta is None:
        doc.add("metadata", "required field is missing", "add 'metadata: {name: my-policy}'")
        return None
    if not isinstance(meta, dict):
        doc.add(
            "metadata",
            f"expected a mapping, got {_type_name(meta)}",
            "write 'metadata: {name: my-policy}'",
        )
        return None
    doc.unknown_keys("metadata", meta, _META_KEYS)
    name = meta.get("name")
    result: str | None = None
    if name is None:
        doc.add(
            "metadata.name",
            "required field is missing",
            "add a name such as 'printers-for-everyone'",
        )
    elif not isinstance(name, str):
        doc.add("metadata.name", f"expected a string, got {_type_name(name)}", _QUOTE_HINT)
    elif len(name) > MAX_NAME_LENGTH:
        doc.add("metadata.name", f"longer than {MAX_NAME_LENGTH} characters", "shorten it")
    elif not _NAME_RE.fullmatch(name):
        doc.add(
            "metadata.name",
            f"{_short(name)} is not a DNS-1123 name",
            "use lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit",
        )
    else:
        result = name
    namespace = meta.get("namespace")
    if namespace is not None and not (
        isinstance(namespace, str)
        and len(namespace) <= 63
        and _NAME_RE.fullmatch(namespace)
        and "." not in namespace
    ):
        doc.add(
            "metadata.namespace",
            f"invalid namespace {_type_name(namespace)}",
            "use a DNS-1123 label or remove it",
        )
    for key in ("labels", "annotations"):
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            doc.add(
                f"metadata.{key}",
                f"expected a mapping of strings, got {_type_name(value)}",
                "write 'key: value' pairs",
            )
        elif len(value) > MAX_META_ENTRIES:
            doc.add(f"metadata.{key}", f"more than {MAX_META_ENTRIES} entries", "remove some")
        else:
            for k, v in value.items():
                if not isinstance(k, str) or not isinstance(v, str):
                    doc.add(
                        f"metadata.{key}.{k}",
                        f"expected a string, got {_type_name(v if isinstance(k, str) else k)}",
                        _QUOTE_HINT,
                    )
    return result


def _parse_spec(spec: object, doc: _Doc, vlans: frozenset[str]) -> dict[str, Any] | None:
    if spec is None:
        doc.add("spec", "required field is missing", "add a spec with from, to and services")
        return None
    if not isinstance(spec, dict):
        doc.add(
            "spec",
            f"expected a mapping, got {_type_name(spec)}",
            "write spec as a mapping with from, to and services",
        )
        return None
    doc.unknown_keys("spec", spec, _SPEC_KEYS)
    from_vlans = _parse_vlans(spec.get("from"), "spec.from", doc, vlans)
    to_vlans = _parse_vlans(spec.get("to"), "spec.to", doc, vlans)
    services = _parse_services(spec.get("services"), doc)
    allow, deny = _parse_instances(spec.get("instances"), doc)
    hosts = _parse_bool(spec, "hosts", doc)
    reflect = _parse_bool(spec, "reflect", doc)
    wide_area = _parse_bool(spec, "wideArea", doc)
    action: Action = "allow"
    raw_action = spec.get("action")
    if raw_action is not None:
        if raw_action in ("allow", "deny"):
            action = raw_action
        else:
            fix = "write 'allow' or 'deny'"
            if isinstance(raw_action, str) and raw_action.lower() in ("allow", "deny"):
                fix = f"write it in lower case: {raw_action.lower()!r}"
            doc.add("spec.action", f"{_type_name(raw_action)} is not one of allow, deny", fix)
    if action == "deny":
        for key, flag in (("reflect", reflect), ("wideArea", wide_area)):
            if flag:
                doc.add(
                    f"spec.{key}",
                    f"'{key}: true' has no meaning on a deny policy (a deny already stops "
                    "visibility, reflection and wide-area publishing)",
                    f"remove '{key}' or make the policy 'action: allow'",
                )
    if from_vlans is None or to_vlans is None or services is None or allow is None or deny is None:
        return None
    return {
        "from_vlans": from_vlans,
        "to_vlans": to_vlans,
        "services": services,
        "instances_allow": allow,
        "instances_deny": deny,
        "hosts": bool(hosts),
        "action": action,
        "reflect": bool(reflect),
        "wide_area": bool(wide_area),
    }


def _parse_bool(spec: Mapping[str, Any], key: str, doc: _Doc) -> bool | None:
    value = spec.get(key)
    if value is None or isinstance(value, bool):
        return value
    doc.add(
        f"spec.{key}",
        f"expected true or false, got {_type_name(value)}",
        f"write '{key}: true' or '{key}: false' without quotes",
    )
    return None


def _parse_list(
    value: object, path: str, doc: _Doc, *, what: str, example: str, min_items: int, max_items: int
) -> tuple[list[tuple[str, str]], bool] | None:
    """Checks the list's shape and items.

    None when the shape is wrong; else ``(path, item)`` for the string items, in order, and
    whether every item was a distinct string (so callers still check the good items).
    """
    if value is None:
        doc.add(path, "required field is missing", f"add a list of {what}, e.g. {example}")
        return None
    if not isinstance(value, list):
        fix = (
            f"write a list: [{value}]"
            if isinstance(value, str)
            else f"write a list of {what}, e.g. {example}"
        )
        doc.add(path, f"expected a list of {what}, got {_type_name(value)}", fix)
        return None
    if len(value) < min_items:
        doc.add(path, f"is empty; list at least one of the {what}", f"e.g. {example}")
        return None
    if len(value) > max_items:
        doc.add(
            path,
            f"lists {len(value)} {what}, more than {max_items}",
            "split the policy into several",
        )
        return None
    items: list[tuple[str, str]] = []
    seen: set[str] = set()
    ok = True
    for i, item in enumerate(value):
        sub = f"{path}[{i}]"
        if not isinstance(item, str):
            doc.add(sub, f"expected a string, got {_type_name(item)}", _QUOTE_HINT)
            ok = False
            continue
        if item in seen:
            doc.add(sub, f"{_short(item)} is listed twice", "remove the duplicate")
            ok = False
            continue
        seen.add(item)
        items.append((sub, item))
    return items, ok


def _parse_vlans(
    value: object, path: str, doc: _Doc, vlans: frozenset[str]
) -> frozenset[str] | None:
    checked = _parse_list(
        value,
        path,
        doc,
        what="VLAN names",
        example='[iot] or ["*"]',
        min_items=1,
        max_items=MAX_VLANS_PER_LIST,
    )
    if checked is None:
        return None
    items, ok = checked
    result: set[str] = set()
    for sub, item in items:
        if len(item) > MAX_VLAN_NAME_LENGTH:
            doc.add(
                sub,
                f"VLAN name longer than {MAX_VLAN_NAME_LENGTH} characters",
                "use the VLAN's key from the config's 'vlans:'",
            )
            ok = False
        elif not _VLAN_RE.fullmatch(item):
            doc.add(
                sub,
                f"{_short(item)} is not a VLAN name (letters, digits, '.', '_', '-'; or \"*\")",
                "use the VLAN's key from the config's 'vlans:', or \"*\" for every VLAN",
            )
            ok = False
        elif item != ANY and item not in vlans:
            names = sorted(vlans)
            close = difflib.get_close_matches(item, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            listed = ", ".join(names) if names else "none are configured"
            doc.add(
                sub,
                f"unknown VLAN {item!r}",
                f"use a VLAN from the config's 'vlans:' ({listed}){hint} or \"*\"",
            )
            ok = False
        else:
            result.add(item)
    return frozenset(result) if ok else None


def _parse_services(value: object, doc: _Doc) -> frozenset[str] | None:
    checked = _parse_list(
        value,
        "spec.services",
        doc,
        what="service types",
        example='[_ipp._tcp] or ["*"]',
        min_items=1,
        max_items=MAX_SERVICES_PER_POLICY,
    )
    if checked is None:
        return None
    items, ok = checked
    result: set[str] = set()
    for sub, item in items:
        try:
            result.add(normalize_service_type(item))
        except ValueError as exc:
            doc.add(sub, str(exc), _service_fix(item))
            ok = False
    return frozenset(result) if ok else None


def _parse_instances(
    value: object, doc: _Doc
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    if value is None:
        return (ANY,), ()
    if not isinstance(value, dict):
        doc.add(
            "spec.instances",
            f"expected a mapping with allow and/or deny, got {_type_name(value)}",
            'write instances: {allow: ["*"], deny: ["*Guest*"]}',
        )
        return None, None
    doc.unknown_keys("spec.instances", value, _INSTANCE_KEYS)
    allow: tuple[str, ...] | None = (ANY,)
    deny: tuple[str, ...] | None = ()
    if value.get("allow") is not None:
        allow = _parse_globs(value["allow"], "spec.instances.allow", doc, min_items=1)
    if value.get("deny") is not None:
        deny = _parse_globs(value["deny"], "spec.instances.deny", doc, min_items=0)
    return allow, deny


def _parse_globs(value: object, path: str, doc: _Doc, *, min_items: int) -> tuple[str, ...] | None:
    checked = _parse_list(
        value,
        path,
        doc,
        what="instance name globs",
        example='["*"] or ["*Guest*"]',
        min_items=min_items,
        max_items=MAX_GLOBS,
    )
    if checked is None:
        return None
    items, ok = checked
    for sub, item in items:
        if len(item) > MAX_GLOB_LENGTH:
            doc.add(
                sub,
                f"glob longer than {MAX_GLOB_LENGTH} characters",
                "shorten it; '*' matches any run of characters",
            )
            ok = False
        elif not _GLOB_RE.fullmatch(item):
            doc.add(
                sub,
                f"{_short(item)} is empty or holds control characters",
                'use printable text with * and ? wildcards, e.g. "*Printer*"',
            )
            ok = False
    return tuple(item for _, item in items) if ok else None


def load_policy_dir(path: Path, vlans: Collection[str]) -> list[ServicePolicy]:
    """Load every ``*.yaml`` / ``*.yml`` file of ``path`` (not recursive), in name order.

    Hidden files (editor locks and swap files) are skipped, symlinks are followed (a Kubernetes
    ConfigMap mount is a directory of symlinks). CustomResourceDefinition documents are skipped.
    Policy names must be unique across the directory. Raises :class:`PolicyError` listing every
    problem of every file.
    """
    problems: list[str] = []
    policies: list[ServicePolicy] = []
    try:
        files = policy_files(path)
    except OSError as exc:
        raise PolicyError(
            [
                f"{path}: cannot read the policies directory: {exc.strerror or exc}; "
                "fix: create it, or point the config's 'policies:' at an existing directory"
            ]
        ) from None
    for file in files:
        try:
            size = file.stat().st_size
            if size > MAX_FILE_BYTES:
                problems.append(
                    f"{file}: file is {size} bytes, more than {MAX_FILE_BYTES}; "
                    "fix: is this really a policy file? split it or move it out of the directory"
                )
                continue
            data = file.read_bytes()
        except OSError as exc:
            problems.append(
                f"{file}: cannot read: {exc.strerror or exc}; fix: check the file's permissions"
            )
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(
                f"{file}: not UTF-8 text (byte {exc.start}); fix: save the file as UTF-8"
            )
            continue
        found, found_problems = _parse_text(text, str(file), vlans)
        policies.extend(found)
        problems.extend(found_problems)
    _check_unique_names(policies, problems)
    if len(policies) > MAX_POLICIES:
        problems.append(
            f"{path}: {len(policies)} policies, more than {MAX_POLICIES}; "
            "fix: merge policies that share from and to"
        )
    if problems:
        raise PolicyError(problems)
    return policies


def policy_files(path: Path) -> list[Path]:
    """The files :func:`load_policy_dir` reads, in name order. OSError if unreadable."""
    return sorted(
        entry
        for entry in path.iterdir()
        if entry.suffix in (".yaml", ".yml") and not entry.name.startswith(".") and entry.is_file()
    )


# ------------------------------------------------------------------------------------------------
# The compiled engine
# ------------------------------------------------------------------------------------------------


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


@functools.lru_cache(maxsize=1024)
def _compile_globs(globs: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex for a glob list; None when the list is empty."""
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(_fold(g))})" for g in globs))


@dataclass(frozen=True, slots=True)
class _InstanceFilter:
    """The instances a policy applies to: an allow glob matches and no deny glob does."""

    allow: re.Pattern[str] | None  # None: every instance
    deny: re.Pattern[str] | None  # None: no exceptions

    @classmethod
    def of(cls, policy: ServicePolicy) -> _InstanceFilter:
        allow = None if ANY in policy.instances_allow else _compile_globs(policy.instances_allow)
        return cls(allow, _compile_globs(policy.instances_deny))

    @property
    def universal(self) -> bool:
        return self.allow is None and self.deny is None

    def selects(self, folded: str) -> bool:
        if self.allow is not None and self.allow.match(folded) is None:
            return False
        return self.deny is None or self.deny.match(folded) is None


@dataclass(frozen=True, slots=True)
class _Rule:
    policy: ServicePolicy
    instances: _InstanceFilter


@dataclass(frozen=True, slots=True)
class _TypeDecision:
    """What one view may see of one (VLAN, type), for one kind of question."""

    type_level: bool  # the answer without an instance (browse, enumeration)
    constant: bool | None  # the answer for every instance, or None when a glob decides
    base: bool  # own-VLAN default or an allow without instance globs applies
    allows: tuple[_InstanceFilter, ...]
    denies: tuple[_InstanceFilter, ...]

    def for_instance(self, folded: str) -> bool:
        if any(d.selects(folded) for d in self.denies):
            return False
        return self.base or any(a.selects(folded) for a in self.allows)


_NEVER: Final = _TypeDecision(False, False, False, (), ())

_Kind = Literal["visible", "reflect", "wide_area"]


class _SourceRules:
    """The policies that concern one (view, source VLAN) pair, indexed by service type."""

    __slots__ = ("allow_any", "allow_by_type", "deny_any", "deny_by_type", "hosts", "own", "seen")

    def __init__(self, own: bool, rules: Sequence[_Rule]) -> None:
        self.own = own
        self.allow_any: list[_Rule] = []
        self.deny_any: list[_Rule] = []
        self.allow_by_type: dict[str, list[_Rule]] = {}
        self.deny_by_type: dict[str, list[_Rule]] = {}
        #: the view may see the plain host names of the VLAN
        self.hosts = (
            own or any(r.policy.hosts and r.policy.action == "allow" for r in rules)
        ) and (not any(r.policy.hosts and r.policy.action == "deny" for r in rules))
        for rule in rules:
            deny = rule.policy.action == "deny"
            if ANY in rule.policy.services:
                (self.deny_any if deny else self.allow_any).append(rule)
            else:
                table = self.deny_by_type if deny else self.allow_by_type
                for stype in rule.policy.services:
                    table.setdefault(stype, []).append(rule)
        #: the view may see something of the VLAN: a service type or the host names
        self.seen = self.hosts or self._sees_a_type()

    def decide(self, stype: str, kind: _Kind) -> _TypeDecision:
        denies = self.deny_any + self.deny_by_type.get(stype, [])
        if any(r.instances.universal for r in denies):
            return _NEVER
        if kind == "reflect" and self.own:
            return _NEVER  # a VLAN's own traffic is never reflected back into it
        allows = self.allow_any + self.allow_by_type.get(stype, [])
        if kind == "reflect":
            allows = [r for r in allows if r.policy.reflect]
        elif kind == "wide_area":
            allows = [r for r in allows if r.policy.wide_area]
        base = (kind == "visible" and self.own) or any(r.instances.universal for r in allows)
        type_level = base or bool(allows)
        if not type_level:
            return _NEVER
        constant: bool | None = None
        if base and not denies:
            constant = True
        return _TypeDecision(
            type_level=type_level,
            constant=constant,
            base=base,
            allows=tuple(r.instances for r in allows if not r.instances.universal),
            denies=tuple(r.instances for r in denies),
        )

    def _sees_a_type(self) -> bool:
        """Some service type of this VLAN is visible (to this view) for some instance."""
        if any(r.instances.universal for r in self.deny_any):
            return False
        denied = {
            t for t, rules in self.deny_by_type.items() if any(r.instances.universal for r in rules)
        }
        if self.own or self.allow_any:
            return True
        return any(t not in denied for t in self.allow_by_type)


def _normalize_lenient(stype: str) -> str:
    """Normalise a type from the hot path: lower case, no ``.local.``, subtype -> parent."""
    stype = _strip_local(stype.lower())
    sub = _SUBTYPE_RE.fullmatch(stype)
    return sub.group(1) if sub else stype


class _Decider:
    """Memoised answers for one view and one kind of question."""

    __slots__ = ("_instances", "_kind", "_sources", "_types")

    def __init__(self, sources: Mapping[str, _SourceRules], kind: _Kind) -> None:
        self._sources = sources
        self._kind = kind
        self._types: dict[tuple[str, str], _TypeDecision] = {}
        self._instances: dict[tuple[str, str, str], bool] = {}

    def decide(self, vlan: str, stype: str, instance: str | None) -> bool:
        key = (vlan, stype)
        decision = self._types.get(key)
        if decision is None:
            src = self._sources.get(vlan)
            decision = _NEVER if src is None else src.decide(_normalize_lenient(stype), self._kind)
            if len(self._types) >= MEMO_MAX_TYPES:
                del self._types[next(iter(self._types))]
            self._types[key] = decision
        if instance is None:
            return decision.type_level
        if decision.constant is not None:
            return decision.constant
        ikey = (vlan, stype, instance)
        result = self._instances.get(ikey)
        if result is None:
            result = decision.for_instance(_fold(instance))
            if len(self._instances) >= MEMO_MAX_INSTANCES:
                del self._instances[next(iter(self._instances))]
            self._instances[ikey] = result
        return result


class ViewPolicy:
    """What one view (a client VLAN, or ``"*"`` for the router) may see. Built by the engine.

    Immutable in effect: the only state that changes is the bounded memo of past answers.
    """

    __slots__ = (
        "_hosts", "_reflect", "_router", "_router_views", "_visible", "_wide_area", "name", "vlans",
    )  # fmt: skip

    name: str
    vlans: frozenset[str]

    def __init__(
        self,
        name: str,
        vlans: frozenset[str],
        sources: Mapping[str, _SourceRules],
        *,
        router_views: Sequence[ViewPolicy] = (),
    ) -> None:
        self.name = name
        self.vlans = vlans
        self._router = name == ANY
        self._hosts = {vlan: src.hosts for vlan, src in sources.items()}
        self._visible = _Decider(sources, "visible")
        self._reflect = _Decider(sources, "reflect")
        self._wide_area = _Decider(sources, "wide_area")
        self._router_views = tuple(router_views) if self._router else ()

    def __repr__(self) -> str:
        return f"ViewPolicy({self.name!r}, vlans={sorted(self.vlans)!r})"

    def service_visible(self, vlan: str, service_type: str, instance: str | None = None) -> bool:
        """May this view see ``service_type`` (an instance of it, if given) living on ``vlan``?"""
        if self._router:
            return True
        return self._visible.decide(vlan, service_type, instance)

    def hosts_visible(self, vlan: str) -> bool:
        """May this view see the plain host names (A/AAAA) of ``vlan``?

        True for the own VLAN unless a deny with ``hosts: true`` applies, and for other VLANs when
        an allow with ``hosts: true`` applies and no such deny. Host names that are the target of
        a visible SRV record are the caller's business.
        """
        if self._router:
            return True
        return self._hosts.get(vlan, False)

    def reflect_visible(self, vlan: str, service_type: str, instance: str | None = None) -> bool:
        """Should multicast for this service be reflected from ``vlan`` into this view?

        Only allow policies with ``reflect: true`` count; never into the VLAN it came from; the
        router view receives no reflection.
        """
        if self._router:
            return False
        return self._reflect.decide(vlan, service_type, instance)

    def wide_area_visible(self, vlan: str, service_type: str, instance: str | None = None) -> bool:
        """Is this service published into the global wide-area zone as this view sees it?

        Only allow policies with ``wideArea: true`` count, the own VLAN included (no default).
        For the router view: published for at least one VLAN view.
        """
        if self._router:
            return any(
                v.wide_area_visible(vlan, service_type, instance) for v in self._router_views
            )
        return self._wide_area.decide(vlan, service_type, instance)


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a view does or does not see a service; ``str()`` gives readable lines."""

    view: str
    vlan: str
    service_type: str
    instance: str | None
    visible: bool
    reflect: bool
    wide_area: bool
    reasons: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(self.reasons)


class PolicyEngine:
    """The compiled policy set. Cheap to query; build a new one on every reload."""

    policies: tuple[ServicePolicy, ...]

    def __init__(self, policies: Sequence[ServicePolicy], vlans: Collection[str]) -> None:
        self.policies = tuple(policies)
        self.vlans: frozenset[str] = frozenset(vlans)
        problems = [
            f"{p.source[0]}: document {p.source[1]} ({p.name}): spec.{key}: unknown VLAN {v!r}; "
            f"fix: use one of {', '.join(sorted(self.vlans)) or 'the configured VLANs'}"
            for p in self.policies
            for key, names in (("from", p.from_vlans), ("to", p.to_vlans))
            for v in sorted(names)
            if v != ANY and v not in self.vlans
        ]
        if ANY in self.vlans:
            problems.append('"*" cannot be a VLAN name; fix: rename the VLAN')
        if problems:
            raise PolicyError(problems)
        rules = [_Rule(p, _InstanceFilter.of(p)) for p in self.policies]
        # Bit i of from_mask[vlan] / to_mask[view] is set when rule i names that VLAN (or "*"), so
        # the rules of a (view, VLAN) pair are one AND, and pairs with the same rules share one
        # _SourceRules: building stays near-linear even for many VLANs and "*" policies.
        from_mask = dict.fromkeys(self.vlans, 0)
        to_mask = dict.fromkeys(self.vlans, 0)
        for i, rule in enumerate(rules):
            for masks, names in (
                (from_mask, rule.policy.from_vlans),
                (to_mask, rule.policy.to_vlans),
            ):
                for vlan in self.vlans if ANY in names else names:
                    masks[vlan] |= 1 << i
        shared: dict[tuple[int, bool], _SourceRules] = {}
        self._views: dict[str, ViewPolicy] = {}
        for view in sorted(self.vlans):
            sources: dict[str, _SourceRules] = {}
            for vlan in self.vlans:
                key = (from_mask[vlan] & to_mask[view], vlan == view)
                src = shared.get(key)
                if src is None:
                    src = shared[key] = _SourceRules(key[1], [rules[i] for i in _bits(key[0])])
                sources[vlan] = src
            seen = frozenset(v for v, src in sources.items() if src.seen)
            self._views[view] = ViewPolicy(view, seen, sources)
        self._views[ANY] = ViewPolicy(
            ANY, self.vlans, {}, router_views=[self._views[v] for v in sorted(self.vlans)]
        )

    def __repr__(self) -> str:
        return f"PolicyEngine({len(self.policies)} policies, vlans={sorted(self.vlans)!r})"

    def view(self, view: str) -> ViewPolicy:
        """The precomputed policy of ``view`` (a VLAN name, or ``"*"`` for the router)."""
        try:
            return self._views[view]
        except KeyError:
            raise KeyError(
                f"unknown view {view!r}; views are the VLANs {sorted(self.vlans)} and '*'"
            ) from None

    def explain(self, view: str, vlan: str, service: str) -> Explanation:
        """Which policies decide whether ``view`` sees ``service`` from ``vlan``, and why.

        ``service`` is a type (``"_ipp._tcp"``) or an instance (``"My Printer._ipp._tcp"``).
        Raises ValueError for an unknown view or VLAN or a malformed service name.
        """
        if view != ANY and view not in self.vlans:
            raise ValueError(f"unknown view {view!r}; use one of {sorted(self.vlans)} or '*'")
        if vlan not in self.vlans:
            raise ValueError(f"unknown VLAN {vlan!r}; use one of {sorted(self.vlans)}")
        stype, instance = split_service_name(service)
        vp = self.view(view)
        visible = vp.service_visible(vlan, stype, instance)
        reflect = vp.reflect_visible(vlan, stype, instance)
        wide = vp.wide_area_visible(vlan, stype, instance)
        what = stype if instance is None else f"instance {instance!r} of {stype}"
        reasons = [f"view {view} sees {what} from VLAN {vlan}: {'yes' if visible else 'no'}"]
        if view == ANY:
            reasons.append("  the router's own view (*) sees every VLAN")
        else:
            reasons.extend(self._why(view, vlan, stype, instance))
        reasons.append(
            f"reflected into {view}: {'yes' if reflect else 'no'}"
            + ("" if view != ANY else " (nothing is reflected to the router)")
        )
        reasons.extend(self._why_flag(view, vlan, stype, instance, "reflect"))
        reasons.append(f"published wide-area: {'yes' if wide else 'no'}")
        reasons.extend(self._why_flag(view, vlan, stype, instance, "wideArea"))
        return Explanation(view, vlan, stype, instance, visible, reflect, wide, reasons)

    # -- explain helpers: a plain walk over the policies, independent of the memoised path ---------

    def _matches(
        self, p: ServicePolicy, view: str, vlan: str, stype: str, instance: str | None
    ) -> tuple[bool, str]:
        """Does ``p`` apply? Returns (applies, why not / how)."""
        if not (ANY in p.from_vlans or vlan in p.from_vlans):
            return False, f"from {_fmt(p.from_vlans)} does not include {vlan}"
        if not (ANY in p.to_vlans or view in p.to_vlans):
            return False, f"to {_fmt(p.to_vlans)} does not include {view}"
        if not (ANY in p.services or stype in p.services):
            return False, f"services {_fmt(p.services)} do not include {stype}"
        filt = _InstanceFilter.of(p)
        how = f"from {_fmt(p.from_vlans)}, to {_fmt(p.to_vlans)}, services {_fmt(p.services)}"
        if p.instances_allow != (ANY,):
            how += f", instances.allow {list(p.instances_allow)}"
        if p.instances_deny:
            how += f", instances.deny {list(p.instances_deny)}"
        if instance is None:
            if p.action == "deny" and not filt.universal:
                return False, "it denies only some instances (instances globs); ask about one"
            return True, how + ("" if filt.universal else " (only the instances these select)")
        folded = _fold(instance)
        if filt.allow is not None and filt.allow.match(folded) is None:
            return (
                False,
                f"instance {instance!r} matches no glob of instances.allow "
                f"{list(p.instances_allow)}",
            )
        if filt.deny is not None and filt.deny.match(folded) is not None:
            hit = next(g for g in p.instances_deny if fnmatch.fnmatchcase(folded, _fold(g)))
            return False, f"instance {instance!r} matches instances.deny glob {hit!r}"
        return True, how

    def _why(self, view: str, vlan: str, stype: str, instance: str | None) -> list[str]:
        lines: list[str] = []
        denies: list[tuple[ServicePolicy, str]] = []
        allows: list[tuple[ServicePolicy, str]] = []
        misses: list[tuple[ServicePolicy, str]] = []
        for p in self.policies:
            applies, how = self._matches(p, view, vlan, stype, instance)
            if applies:
                (denies if p.action == "deny" else allows).append((p, how))
            elif (ANY in p.from_vlans or vlan in p.from_vlans) and (
                ANY in p.to_vlans or view in p.to_vlans
            ):
                misses.append((p, how))
        for p, how in denies:
            lines.append(f"  denied by policy {p.where}: {how}; a deny wins over every allow")
        for p, how in allows:
            verb = "would be allowed" if denies else "allowed"
            lines.append(f"  {verb} by policy {p.where}: {how}")
        if vlan == view:
            if denies:
                lines.append(
                    "  the own-VLAN default (a VLAN sees its own services) "
                    "is overridden by the deny"
                )
            else:
                lines.append("  own VLAN: a VLAN sees its own services by default")
        elif not denies and not allows:
            if misses:
                lines.append(
                    "  not allowed: no allow policy applies (nothing crosses VLANs unless one does)"
                )
            else:
                lines.append(
                    f"  no policy has {vlan} (or *) in from and {view} (or *) in to: "
                    "nothing crosses VLANs unless an allow policy matches"
                )
        for p, how in misses:
            lines.append(f"  policy {p.where} does not apply: {how}")
        return lines

    def _why_flag(
        self, view: str, vlan: str, stype: str, instance: str | None, flag: str
    ) -> list[str]:
        if view == ANY:
            if flag == "reflect":
                return []
            views = [
                v
                for v in sorted(self.vlans)
                if self._views[v].wide_area_visible(vlan, stype, instance)
            ]
            if views:
                return [f"  published for the views {', '.join(views)}"]
            return ["  published for no VLAN view"]
        if flag == "reflect" and view == vlan:
            return ["  a VLAN's own services are never reflected back into it"]
        deciders: list[ServicePolicy] = []
        for p in self.policies:
            applies, _ = self._matches(p, view, vlan, stype, instance)
            if not applies:
                continue
            if p.action == "deny":
                return [f"  denied by policy {p.where}; a deny wins over every allow"]
            if p.reflect if flag == "reflect" else p.wide_area:
                deciders.append(p)
        if deciders:
            return [f"  by policy {p.where} ({flag}: true)" for p in deciders]
        return [f"  no matching allow policy has {flag}: true"]


def _bits(mask: int) -> Iterator[int]:
    """The indexes of the set bits of ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _fmt(values: Iterable[str]) -> str:
    return "[" + ", ".join(sorted(values)) + "]"


def default_engine(vlans: Collection[str]) -> PolicyEngine:
    """No policies: every VLAN sees only itself."""
    return PolicyEngine((), vlans)
