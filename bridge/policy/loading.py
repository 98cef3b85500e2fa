"""ServicePolicy files -> validated :class:`ServicePolicy` values, every problem named."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any, Final

import yaml

from .. import const
from .model import (
    _GLOB_RE,
    _INSTANCE_KEYS,
    _META_KEYS,
    _NAME_RE,
    _SPEC_KEYS,
    _TOP_KEYS,
    _VLAN_RE,
    ANY,
    API_VERSION,
    CRD_KIND,
    KIND,
    MAX_FILE_BYTES,
    MAX_GLOB_LENGTH,
    MAX_GLOBS,
    MAX_META_ENTRIES,
    MAX_NAME_LENGTH,
    MAX_POLICIES,
    MAX_SERVICES_PER_POLICY,
    MAX_VLAN_NAME_LENGTH,
    MAX_VLANS_PER_LIST,
    Action,
    PolicyError,
    ServicePolicy,
    _service_fix,
    normalize_service_type,
)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys, as Kubernetes' YAML decoder does."""


_CSafeLoader: Any = getattr(yaml, "CSafeLoader", None)  # libyaml's parser, ~10x faster
_StrictCLoader: Any = None
if _CSafeLoader is not None:

    class _StrictCLoader(_CSafeLoader):  # type: ignore[no-redef]
        """The same checks on libyaml's parser (used where the nesting bound allows it)."""


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
if _StrictCLoader is not None:
    _StrictCLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
    )

_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_BRACKET_DEPTH = {"[": 1, "{": 1, "]": -1, "}": -1}


def _nesting_bound(text: str) -> int:
    """An upper bound of the YAML nesting depth, computed at C speed.

    Block collections nest by column, so twice the longest line bounds them; flow collections
    nest by brackets (quoted brackets only make the bound larger, which is safe).
    """
    longest = max(map(len, text.split("\n")), default=0)
    brackets = _NOT_BRACKETS.sub("", text)
    flow = max(accumulate(map(_BRACKET_DEPTH.__getitem__, brackets)), default=0)
    return 2 * (longest + 1) + flow


def _loader_for(text: str) -> Any:
    """libyaml where available and the file cannot nest deep enough to crash its composer."""
    if _StrictCLoader is not None and _nesting_bound(text) <= const.POLICY_CYAML_DEPTH_BOUND:
        return _StrictCLoader
    return _StrictLoader


def _documents_bound(data: bytes) -> int:
    """How many YAML documents a file can hold at most: one, plus one per '---' line."""
    return 1 + data.count(b"\n---") + data.startswith(b"---")


def read_bounded(file: Path) -> bytes:
    """The file's content, at most MAX_FILE_BYTES + 1 bytes whatever stat() says (a symlink to
    a /proc file reports 0 bytes and reads 5 MB). OSError if it cannot be read."""
    with file.open("rb") as f:
        return f.read(MAX_FILE_BYTES + 1)


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

    __slots__ = ("file", "index", "label", "name", "problems")

    def __init__(
        self, file: str, index: int, problems: list[str], label: str | None = None
    ) -> None:
        """``label`` replaces ``"<file>: document <n> (<name>)"`` before each problem (an API
        object is no document of a file); ``""``: the problem starts with the field path."""
        self.file = file
        self.index = index
        self.label = label
        self.name = "unnamed"
        self.problems = problems

    def add(self, path: str, reason: str, fix: str) -> None:
        head = (
            f"{self.file}: document {self.index} ({self.name})"
            if self.label is None
            else self.label
        )
        self.problems.append(
            f"{head}: {path}: {reason}; fix: {fix}" if head else f"{path}: {reason}; fix: {fix}"
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
    for index, doc in yaml_documents(text, filename, problems):
        policy = _parse_document(doc, _Doc(filename, index, problems), known)
        if policy is not None:
            policies.append(policy)
    return policies, problems


def yaml_documents(text: str, filename: str, problems: list[str]) -> Iterator[tuple[int, Any]]:
    """(number from 1, content) of each non-empty YAML document of a file, parsed strictly
    (duplicate keys refused, nesting bounded). A file that stops parsing adds one problem
    (line, column, reason, fix) to ``problems`` and ends the documents there."""
    index = 0
    try:
        for index, doc in enumerate(yaml.load_all(text, Loader=_loader_for(text)), start=1):
            if doc is not None:
                yield index, doc
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
    except Exception as exc:  # e.g. ValueError: an integer of more digits than int() converts
        problems.append(
            f"{filename}: document {index + 1} (unnamed): cannot be read:"
            f" {type(exc).__name__}: {_short(str(exc), 120)};"
            " fix: correct the value (quote long numbers)"
        )


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
    total = documents = 0
    for file in files:
        try:
            data = read_bounded(file)
        except OSError as exc:
            problems.append(
                f"{file}: cannot read: {exc.strerror or exc}; fix: check the file's permissions"
            )
            continue
        if len(data) > MAX_FILE_BYTES:
            problems.append(
                f"{file}: file is more than {MAX_FILE_BYTES} bytes; "
                "fix: is this really a policy file? split it or move it out of the directory"
            )
            continue
        total += len(data)
        documents += _documents_bound(data)
        if total > const.POLICY_MAX_TOTAL_BYTES or documents > const.POLICY_MAX_DOCUMENTS:
            problems.append(
                f"{file}: the directory's files up to this one hold more than"
                f" {const.POLICY_MAX_TOTAL_BYTES} bytes or {const.POLICY_MAX_DOCUMENTS}"
                " documents; not parsed, nor the files after it;"
                " fix: merge policies that share from and to, remove files that are no policies"
            )
            break
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
