"""One resource document's problems, and the checks every resource kind shares.

Each kind (ServicePolicy in :mod:`.loading`, ServiceAnnouncement in
:mod:`bridge.policy.announcement`) validates its spec with these, so every problem reads the same:
``"<file>: document <n> (<metadata.name>): <field path>: <reason>; fix: <hint>"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from .model import (
    _META_KEYS,
    _NAME_RE,
    _VLAN_RE,
    ANY,
    MAX_META_ENTRIES,
    MAX_NAME_LENGTH,
    MAX_VLAN_NAME_LENGTH,
    MAX_VLANS_PER_LIST,
)


def _close(word: str, choices: Sequence[str]) -> list[str]:
    """The closest of ``choices`` to a misspelt ``word`` (at most one): difflib is imported
    here, on a problem, not with the module (start-up, docs/performance.md)."""
    import difflib

    return difflib.get_close_matches(word, choices, n=1)


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {short(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value}"


def short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


QUOTE_HINT: Final = (
    "quote it; YAML reads unquoted yes/no/on/off/true/false as booleans and digits as numbers"
)


class Document:
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
                close = _close(str(key), allowed)
                hint = f"did you mean {close[0]!r}?" if close else "remove it"
                self.add(
                    sub,
                    f"unknown field {short(key)}",
                    f"{hint} (allowed here: {', '.join(allowed)})",
                )


def parse_metadata(meta: object, doc: Document) -> str | None:
    if meta is None:
        doc.add("metadata", "required field is missing", "add 'metadata: {name: my-policy}'")
        return None
    if not isinstance(meta, dict):
        doc.add(
            "metadata",
            f"expected a mapping, got {type_name(meta)}",
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
        doc.add("metadata.name", f"expected a string, got {type_name(name)}", QUOTE_HINT)
    elif len(name) > MAX_NAME_LENGTH:
        doc.add("metadata.name", f"longer than {MAX_NAME_LENGTH} characters", "shorten it")
    elif not _NAME_RE.fullmatch(name):
        doc.add(
            "metadata.name",
            f"{short(name)} is not a DNS-1123 name",
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
            f"invalid namespace {type_name(namespace)}",
            "use a DNS-1123 label or remove it",
        )
    for key in ("labels", "annotations"):
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            doc.add(
                f"metadata.{key}",
                f"expected a mapping of strings, got {type_name(value)}",
                "write 'key: value' pairs",
            )
        elif len(value) > MAX_META_ENTRIES:
            doc.add(f"metadata.{key}", f"more than {MAX_META_ENTRIES} entries", "remove some")
        else:
            for k, v in value.items():
                if not isinstance(k, str) or not isinstance(v, str):
                    doc.add(
                        f"metadata.{key}.{k}",
                        f"expected a string, got {type_name(v if isinstance(k, str) else k)}",
                        QUOTE_HINT,
                    )
    return result


def parse_bool(spec: Mapping[str, Any], key: str, doc: Document) -> bool | None:
    value = spec.get(key)
    if value is None or isinstance(value, bool):
        return value
    doc.add(
        f"spec.{key}",
        f"expected true or false, got {type_name(value)}",
        f"write '{key}: true' or '{key}: false' without quotes",
    )
    return None


def parse_list(
    value: object,
    path: str,
    doc: Document,
    *,
    what: str,
    example: str,
    min_items: int,
    max_items: int,
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
        doc.add(path, f"expected a list of {what}, got {type_name(value)}", fix)
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
            doc.add(sub, f"expected a string, got {type_name(item)}", QUOTE_HINT)
            ok = False
            continue
        if item in seen:
            doc.add(sub, f"{short(item)} is listed twice", "remove the duplicate")
            ok = False
            continue
        seen.add(item)
        items.append((sub, item))
    return items, ok


def parse_vlans(
    value: object, path: str, doc: Document, vlans: frozenset[str]
) -> frozenset[str] | None:
    checked = parse_list(
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
                f"{short(item)} is not a VLAN name (letters, digits, '.', '_', '-'; or \"*\")",
                "use the VLAN's key from the config's 'vlans:', or \"*\" for every VLAN",
            )
            ok = False
        elif item != ANY and item not in vlans:
            names = sorted(vlans)
            close = _close(item, names)
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
