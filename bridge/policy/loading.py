"""Resource files -> validated ServicePolicy and ServiceAnnouncement values, every problem named.

The entry points are kind-agnostic: :func:`parse_document` takes one decoded document (from a
file here, or from another source such as the Kubernetes API) and returns the resource of its
kind; :func:`load_resource_dir` reads a directory into :class:`Resources`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any, Final

import yaml

from .. import const
from .announcement import KIND as ANNOUNCEMENT_KIND
from .announcement import MAX_ANNOUNCEMENTS, ServiceAnnouncement, parse_announcement
from .document import (
    Document,
    parse_bool,
    parse_list,
    parse_metadata,
    parse_vlans,
    short,
    type_name,
)
from .model import (
    _GLOB_RE,
    _INSTANCE_KEYS,
    _SPEC_KEYS,
    _TOP_KEYS,
    ANY,
    API_VERSION,
    CRD_KIND,
    KIND,
    MAX_FILE_BYTES,
    MAX_GLOB_LENGTH,
    MAX_GLOBS,
    MAX_POLICIES,
    MAX_SERVICES_PER_POLICY,
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


Resource = ServicePolicy | ServiceAnnouncement
KINDS: Final = (KIND, ANNOUNCEMENT_KIND)


@dataclass(frozen=True, slots=True)
class Resources:
    """What a policies directory holds, by kind, in file and document order."""

    policies: tuple[ServicePolicy, ...] = ()
    announcements: tuple[ServiceAnnouncement, ...] = ()

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> Resources:
        items = list(resources)
        return cls(
            tuple(r for r in items if isinstance(r, ServicePolicy)),
            tuple(r for r in items if isinstance(r, ServiceAnnouncement)),
        )


def parse_policy_text(text: str, filename: str, vlans: Collection[str]) -> list[ServicePolicy]:
    """Parse and validate the ServicePolicy documents of one YAML file.

    Validation follows the CRD schema in ``policies/crd.yaml`` (Kubernetes semantics: unknown
    fields, duplicate keys and duplicate list entries are errors, a null optional field counts as
    absent) and also checks that every VLAN named exists in ``vlans``. Empty documents are
    skipped, and so are CustomResourceDefinition documents, so the CRD may live beside the
    policies. Every problem of the file is collected; any problem raises :class:`PolicyError`.
    """
    return list(parse_resource_text(text, filename, vlans).policies)


def parse_resource_text(text: str, filename: str, vlans: Collection[str]) -> Resources:
    """:func:`parse_policy_text` for every kind (ServiceAnnouncement too)."""
    resources, problems = _parse_text(text, filename, vlans)
    _check_unique_names(resources, problems)
    if problems:
        raise PolicyError(problems)
    return Resources.of(resources)


def _parse_text(
    text: str, filename: str, vlans: Collection[str]
) -> tuple[list[Resource], list[str]]:
    """The valid resources of a file, and the problems of the others."""
    problems: list[str] = []
    resources: list[Resource] = []
    known = frozenset(vlans)
    for index, raw in yaml_documents(text, filename, problems):
        resource = parse_document(raw, Document(filename, index, problems), known)
        if resource is not None:
            resources.append(resource)
    return resources, problems


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
            f" {type(exc).__name__}: {short(str(exc), 120)};"
            " fix: correct the value (quote long numbers)"
        )


def _check_unique_names(resources: Sequence[Resource], problems: list[str]) -> None:
    """Names are unique per kind (as in Kubernetes: a policy and an announcement may share)."""
    first: dict[tuple[type, str], Resource] = {}
    for res in resources:
        earlier = first.setdefault((type(res), res.name), res)
        if earlier is not res:
            what = "policy" if isinstance(res, ServicePolicy) else "announcement"
            problems.append(
                f"{res.source[0]}: document {res.source[1]} ({res.name}): metadata.name: "
                f"{res.name!r} is already used by {earlier.where}; "
                f"fix: give every {what} a unique name"
            )


def parse_document(raw: object, doc: Document, vlans: frozenset[str]) -> Resource | None:
    """One decoded document -> the resource of its kind; None (problems in ``doc``) if invalid,
    or for a CustomResourceDefinition (the CRDs may live beside the resources)."""
    if not isinstance(raw, dict):
        doc.add(
            "(document)",
            f"expected a mapping with apiVersion, kind, metadata and spec, got {type_name(raw)}",
            f"start the document with 'apiVersion: {API_VERSION}'",
        )
        return None
    kind = raw.get("kind")
    if kind == CRD_KIND:
        return None
    before = len(doc.problems)
    meta = raw.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("name"), str) and meta["name"]:
        doc.name = short(meta["name"], 80).strip("'\"")
    doc.unknown_keys("", raw, _TOP_KEYS)

    api = raw.get("apiVersion")
    if api is None:
        doc.add("apiVersion", "required field is missing", f"add 'apiVersion: {API_VERSION}'")
    elif api != API_VERSION:
        doc.add("apiVersion", f"unsupported {type_name(api)}", f"use {API_VERSION!r}")
    if kind is None:
        doc.add("kind", "required field is missing", f"add 'kind: {KIND}'")
    elif kind not in KINDS:
        doc.add(
            "kind",
            f"unsupported kind {type_name(kind)}",
            f"this directory holds only {KIND} and {ANNOUNCEMENT_KIND} resources (and their"
            f" CRDs); use 'kind: {KIND}' or 'kind: {ANNOUNCEMENT_KIND}'",
        )
    name = parse_metadata(meta, doc)
    spec = raw.get("spec")
    if kind == ANNOUNCEMENT_KIND:
        announcement = parse_announcement(name or "", spec, doc, vlans)
        if len(doc.problems) != before or name is None:
            return None
        return announcement
    parsed = _parse_spec(spec, doc, vlans)
    if len(doc.problems) != before or name is None or parsed is None:
        return None
    return ServicePolicy(name=name, source=(doc.file, doc.index), **parsed)


def _parse_spec(spec: object, doc: Document, vlans: frozenset[str]) -> dict[str, Any] | None:
    if spec is None:
        doc.add("spec", "required field is missing", "add a spec with from, to and services")
        return None
    if not isinstance(spec, dict):
        doc.add(
            "spec",
            f"expected a mapping, got {type_name(spec)}",
            "write spec as a mapping with from, to and services",
        )
        return None
    doc.unknown_keys("spec", spec, _SPEC_KEYS)
    from_vlans = parse_vlans(spec.get("from"), "spec.from", doc, vlans)
    to_vlans = parse_vlans(spec.get("to"), "spec.to", doc, vlans)
    services = _parse_services(spec.get("services"), doc)
    allow, deny = _parse_instances(spec.get("instances"), doc)
    hosts = parse_bool(spec, "hosts", doc)
    reflect = parse_bool(spec, "reflect", doc)
    wide_area = parse_bool(spec, "wideArea", doc)
    action: Action = "allow"
    raw_action = spec.get("action")
    if raw_action is not None:
        if raw_action in ("allow", "deny"):
            action = raw_action
        else:
            fix = "write 'allow' or 'deny'"
            if isinstance(raw_action, str) and raw_action.lower() in ("allow", "deny"):
                fix = f"write it in lower case: {raw_action.lower()!r}"
            doc.add("spec.action", f"{type_name(raw_action)} is not one of allow, deny", fix)
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


def _parse_services(value: object, doc: Document) -> frozenset[str] | None:
    checked = parse_list(
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
    value: object, doc: Document
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    if value is None:
        return (ANY,), ()
    if not isinstance(value, dict):
        doc.add(
            "spec.instances",
            f"expected a mapping with allow and/or deny, got {type_name(value)}",
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


def _parse_globs(
    value: object, path: str, doc: Document, *, min_items: int
) -> tuple[str, ...] | None:
    checked = parse_list(
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
                f"{short(item)} is empty or holds control characters",
                'use printable text with * and ? wildcards, e.g. "*Printer*"',
            )
            ok = False
    return tuple(item for _, item in items) if ok else None


def load_policy_dir(path: Path, vlans: Collection[str]) -> list[ServicePolicy]:
    """The ServicePolicies of :func:`load_resource_dir` (the announcements are validated too)."""
    return list(load_resource_dir(path, vlans).policies)


def load_resource_dir(path: Path, vlans: Collection[str]) -> Resources:
    """Load every ``*.yaml`` / ``*.yml`` file of ``path`` (not recursive), in name order.

    Hidden files (editor locks and swap files) are skipped, symlinks are followed (a Kubernetes
    ConfigMap mount is a directory of symlinks). CustomResourceDefinition documents are skipped.
    Names must be unique per kind across the directory. Raises :class:`PolicyError` listing
    every problem of every file.
    """
    problems: list[str] = []
    resources: list[Resource] = []
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
        resources.extend(found)
        problems.extend(found_problems)
    _check_unique_names(resources, problems)
    result = Resources.of(resources)
    if len(result.policies) > MAX_POLICIES:
        problems.append(
            f"{path}: {len(result.policies)} policies, more than {MAX_POLICIES}; "
            "fix: merge policies that share from and to"
        )
    if len(result.announcements) > MAX_ANNOUNCEMENTS:
        problems.append(
            f"{path}: {len(result.announcements)} announcements, more than {MAX_ANNOUNCEMENTS};"
            " fix: announce fewer services, or split them over routers"
        )
    if problems:
        raise PolicyError(problems)
    return result


def policy_files(path: Path) -> list[Path]:
    """The files :func:`load_policy_dir` reads, in name order. OSError if unreadable."""
    return sorted(
        entry
        for entry in path.iterdir()
        if entry.suffix in (".yaml", ".yml") and not entry.name.startswith(".") and entry.is_file()
    )
