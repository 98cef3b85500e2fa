"""ServicePolicy objects of the Kubernetes API, and manifests meant for it -> validated policies.

The watch (:mod:`.kubesource`) and ``mdns-gateway check --policies`` both go through
:func:`validate_object`, which runs the file loader's own document checks
(:func:`.loading.parse_document`: one piece of code validates a policy, wherever it comes
from). What the API server adds to an object it stores (``status``, and the metadata it writes:
``uid``, ``resourceVersion``, ``generation``, ``managedFields``, ...) is set aside first, so an
object validates exactly as the document it was applied from.

A manifest directory may hold what a GitOps repository holds: multi-document YAML,
kubectl-style ``kind: List`` documents (``kubectl get -o yaml``), and other kinds beside the
policies (ignored, with a note).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .. import const
from .announcement import KIND as ANNOUNCEMENT_KIND
from .announcement import ServiceAnnouncement
from .document import Document, short
from .loading import parse_document, read_bounded, yaml_documents
from .model import API_VERSION, KIND, MAX_FILE_BYTES, MAX_POLICIES, ServicePolicy

#: metadata the API server writes into every object it stores; not the author's
SERVER_METADATA: Final = frozenset(
    {
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
        "finalizers",
        "ownerReferences",
        "generateName",
    }
)
#: top-level fields the API server owns (written through the status subresource)
SERVER_FIELDS: Final = frozenset({"status"})
LIST_KIND: Final = "List"

ObjectKey = tuple[str, str]  # (namespace, name); namespace "" in a manifest that names none


class AnyVlan(frozenset[str]):
    """The VLAN names of no config: every name is taken as configured (``check --policies``
    without ``--config`` cannot know the router's VLANs, and says so)."""

    def __contains__(self, item: object) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Verdict:
    """One object validated: its policy (or announcement), or why it is rejected (problems
    start with the field)."""

    policy: ServicePolicy | None
    problems: tuple[str, ...] = ()
    announcement: ServiceAnnouncement | None = None

    @property
    def resource(self) -> ServicePolicy | ServiceAnnouncement | None:
        return self.policy if self.policy is not None else self.announcement

    @property
    def accepted(self) -> bool:
        return self.resource is not None


def object_key(raw: Mapping[str, Any]) -> ObjectKey | None:
    """(namespace, name) of an object, or None when its metadata names none."""
    meta = raw.get("metadata")
    if not isinstance(meta, dict):
        return None
    name, namespace = meta.get("name"), meta.get("namespace") or ""
    if not isinstance(name, str) or not name or not isinstance(namespace, str):
        return None
    return namespace, name


def authored(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The object without what the API server writes into it (status, server metadata)."""
    out = {k: v for k, v in raw.items() if k not in SERVER_FIELDS}
    meta = out.get("metadata")
    if isinstance(meta, dict):
        out["metadata"] = {k: v for k, v in meta.items() if k not in SERVER_METADATA}
    return out


def validate_object(
    raw: Mapping[str, Any], vlans: Collection[str], label: str = "", origin: str = "kubernetes"
) -> Verdict:
    """Validate one ServicePolicy or ServiceAnnouncement object as the file loader validates
    one document.

    ``label`` starts each problem line (``""``: the line starts with the field path, as the
    status condition's message does). The resource is named ``namespace/name`` (names are unique
    per namespace only) and its source is ``origin``.
    """
    problems: list[str] = []
    known = vlans if isinstance(vlans, frozenset) else frozenset(vlans)
    found = parse_document(authored(raw), Document(origin, 0, problems, label=label), known)
    if not isinstance(found, ServicePolicy | ServiceAnnouncement):  # None: invalid
        return Verdict(None, tuple(problems))
    key = object_key(raw)
    name = f"{key[0]}/{key[1]}" if key is not None and key[0] else found.name
    named = dataclasses.replace(found, name=name, source=(origin, 0))
    if isinstance(named, ServiceAnnouncement):
        return Verdict(None, announcement=named)
    return Verdict(named)


@dataclass(slots=True)
class ManifestReport:
    """What ``check --policies`` found: valid policies, notes (kinds ignored), problems."""

    policies: list[ServicePolicy] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)


def manifest_files(path: Path) -> list[Path]:
    """Every ``*.yaml`` / ``*.yml`` under ``path`` (recursive, as a GitOps tree is), in path
    order, hidden files and directories skipped. OSError if ``path`` cannot be listed."""
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    return sorted(
        f
        for f in path.rglob("*")
        if f.suffix in (".yaml", ".yml")
        and not any(part.startswith(".") for part in f.relative_to(path).parts)
        and f.is_file()
    )


def check_manifests(path: Path, vlans: Collection[str]) -> ManifestReport:
    """Validate the ServicePolicy manifests under ``path`` exactly as the watch validates the
    objects they become; (namespace, name) must be unique, as the API server makes it."""
    report = ManifestReport()
    try:
        files = manifest_files(path)
    except OSError as exc:
        report.problems.append(
            f"{path}: cannot read the manifests directory: {exc.strerror or exc}; "
            "fix: give the directory of the ServicePolicy manifests"
        )
        return report
    seen: dict[ObjectKey, str] = {}
    total = 0
    for file in files:
        try:
            data = read_bounded(file)
        except OSError as exc:
            report.problems.append(
                f"{file}: cannot read: {exc.strerror or exc}; fix: check the file's permissions"
            )
            continue
        total += len(data)
        if len(data) > MAX_FILE_BYTES or total > const.POLICY_MAX_TOTAL_BYTES:
            report.problems.append(
                f"{file}: more than {MAX_FILE_BYTES} bytes, or the files up to it more than "
                f"{const.POLICY_MAX_TOTAL_BYTES}; not parsed; fix: split it, or move files "
                "that are no manifests out of the directory"
            )
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            report.problems.append(
                f"{file}: not UTF-8 text (byte {exc.start}); fix: save the file as UTF-8"
            )
            continue
        for index, doc in yaml_documents(text, str(file), report.problems):
            _check_document(doc, f"{file}: document {index}", vlans, report, seen)
    if len(report.policies) > MAX_POLICIES:
        report.problems.append(
            f"{path}: {len(report.policies)} policies, more than the {MAX_POLICIES} a gateway "
            "takes; fix: merge policies that share from and to"
        )
    return report


def _check_document(
    doc: object,
    where: str,
    vlans: Collection[str],
    report: ManifestReport,
    seen: dict[ObjectKey, str],
) -> None:
    if not isinstance(doc, dict):
        report.problems.append(
            f"{where}: (document): expected a Kubernetes object (a mapping with apiVersion and "
            f"kind), got {short(doc)}; fix: remove it or write a ServicePolicy"
        )
        return
    kind = doc.get("kind")
    if kind == LIST_KIND and isinstance(doc.get("items"), list):
        for i, item in enumerate(doc["items"]):
            _check_document(item, f"{where} items[{i}]", vlans, report, seen)
        return
    if kind == ANNOUNCEMENT_KIND:
        report.notes.append(
            f"{where}: kind {kind} skipped: check --policies validates {KIND} manifests only "
            "(the Kubernetes source reads both kinds)"
        )
        return
    if kind != KIND:
        report.notes.append(f"{where}: kind {short(kind)} ignored: not a {KIND}")
        return
    key = object_key(doc)
    label = f"{where} ({key[1] if key else 'unnamed'})"
    if doc.get("apiVersion") == API_VERSION and key is not None:
        earlier = seen.setdefault(key, label)
        if earlier != label:
            report.problems.append(
                f"{label}: metadata.name: {key[1]!r} is already used in namespace "
                f"{key[0] or '(the default)'} by {earlier}; fix: give every policy a unique name"
            )
            return
    verdict = validate_object(doc, vlans, label=label, origin=where)
    if verdict.policy is None:
        report.problems.extend(verdict.problems)
    else:
        report.policies.append(verdict.policy)
