"""The ServiceAnnouncement resource: a service the router announces for a device (pure).

What Avahi's ``/etc/avahi/services`` files are for: a printer without Bonjour, a NAS, a camera.
The resource lives where ServicePolicy does (the policies directory, the CRD in
``policies/crd-announcement.yaml``) and is validated the same way, every problem naming its
file, document and field (:mod:`bridge.policy.document`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

from .document import Document, parse_list, parse_vlans, short, type_name
from .model import ANY, normalize_service_type

KIND: Final = "ServiceAnnouncement"

# --- Limits. Each mirrors the CRD schema in policies/crd-announcement.yaml (tested). ----------
#: octets of the instance label (RFC 6763 §4.1.1)
MAX_INSTANCE_OCTETS: Final = 63
#: entries of ``subtypes``; a device registers a handful
MAX_SUBTYPES: Final = 16
#: entries of ``addresses``; a host has a few
MAX_ADDRESSES: Final = 16
#: entries of ``txt``; and octets of one ``key=value`` string (RFC 6763 §6.1: 255 at most)
MAX_TXT_ENTRIES: Final = 64
MAX_TXT_ENTRY_OCTETS: Final = 255
#: octets of the whole TXT record: keep the announcement inside one packet (RFC 6763 §6.2)
MAX_TXT_OCTETS: Final = 1300
#: announcements per directory; bounds the responder's registrations
MAX_ANNOUNCEMENTS: Final = 1024

# --- Patterns, shared with the CRD schema (Go RE2 and Python re). ----------------------------
HOST_PATTERN: Final = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
SUBTYPE_PATTERN: Final = r"^_?[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$"
TXT_KEY_PATTERN: Final = r"^[\x20-\x3C\x3E-\x7E]{1,63}$"  # printable, no "=" (RFC 6763 §6.4)
INSTANCE_PATTERN: Final = r"^[^\x00-\x1F\x7F]+$"

_HOST_RE: Final = re.compile(HOST_PATTERN)
_SUBTYPE_RE: Final = re.compile(SUBTYPE_PATTERN)
_TXT_KEY_RE: Final = re.compile(TXT_KEY_PATTERN)
_INSTANCE_RE: Final = re.compile(INSTANCE_PATTERN)

SPEC_KEYS: Final = (
    "vlans", "instance", "type", "subtypes", "host", "addresses", "port", "txt",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ServiceAnnouncement:
    """One validated ServiceAnnouncement, normalised.

    ``vlans`` holds configured VLAN names (``"*"`` expanded by the caller: see :meth:`on`);
    ``stype`` and ``subtypes`` are lower-case (``"_ipp._tcp"``, ``"_universal"``); ``host`` is a
    DNS label (``printer`` for ``printer.local``); ``addresses`` may be empty, then a DHCP lease
    of ``host`` on the VLAN gives them; ``txt`` is in the order written.
    """

    name: str
    source: tuple[str, int]
    vlans: frozenset[str]
    instance: str
    stype: str
    host: str
    port: int
    subtypes: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    txt: tuple[tuple[str, str], ...] = ()

    @property
    def where(self) -> str:
        return f"{self.name} ({self.source[0]}, document {self.source[1]})"

    def on(self, vlan: str) -> bool:
        return ANY in self.vlans or vlan in self.vlans

    def txt_strings(self) -> tuple[bytes, ...]:
        """The TXT record's ``key=value`` strings, in the order written."""
        return tuple(f"{k}={v}".encode() for k, v in self.txt)


def parse_announcement(
    name: str, spec: object, doc: Document, vlans: frozenset[str]
) -> ServiceAnnouncement | None:
    """Validate a ServiceAnnouncement's spec; problems go to ``doc``, None if there was one."""
    if spec is None:
        doc.add("spec", "required field is missing", "add a spec with vlans, instance, type, ...")
        return None
    if not isinstance(spec, dict):
        doc.add(
            "spec",
            f"expected a mapping, got {type_name(spec)}",
            "write spec as a mapping with vlans, instance, type, host and port",
        )
        return None
    before = len(doc.problems)
    doc.unknown_keys("spec", spec, SPEC_KEYS)
    on = parse_vlans(spec.get("vlans"), "spec.vlans", doc, vlans)
    instance = _instance(spec.get("instance"), doc)
    stype = _stype(spec.get("type"), doc)
    subtypes = _subtypes(spec.get("subtypes"), doc)
    host = _host(spec.get("host"), doc)
    addresses = _addresses(spec.get("addresses"), doc)
    port = _port(spec.get("port"), doc)
    txt = _txt(spec.get("txt"), doc)
    if len(doc.problems) != before:
        return None
    assert on is not None and instance is not None and stype is not None and host is not None
    assert port is not None and subtypes is not None and addresses is not None and txt is not None
    return ServiceAnnouncement(
        name, (doc.file, doc.index), on, instance, stype, host, port, subtypes, addresses, txt
    )


def _instance(value: object, doc: Document) -> str | None:
    if value is None:
        doc.add("spec.instance", "required field is missing", "add e.g. 'instance: Office Printer'")
    elif not isinstance(value, str):
        doc.add("spec.instance", f"expected a string, got {type_name(value)}", "quote it")
    elif not _INSTANCE_RE.fullmatch(value):
        doc.add("spec.instance", "is empty or holds control characters", "use printable text")
    elif len(value.encode()) > MAX_INSTANCE_OCTETS:
        doc.add(
            "spec.instance",
            f"longer than {MAX_INSTANCE_OCTETS} octets (UTF-8)",
            "shorten it (RFC 6763 §4.1.1)",
        )
    else:
        return value
    return None


def _stype(value: object, doc: Document) -> str | None:
    if value is None:
        doc.add("spec.type", "required field is missing", "add e.g. 'type: _ipp._tcp'")
        return None
    if not isinstance(value, str):
        doc.add("spec.type", f"expected a string, got {type_name(value)}", "e.g. '_ipp._tcp'")
        return None
    try:
        stype = normalize_service_type(value)
    except ValueError as exc:
        doc.add("spec.type", str(exc), "write a DNS-SD service type such as '_ipp._tcp'")
        return None
    if stype == ANY:
        doc.add("spec.type", "'*' is no service type", "write the type, e.g. '_ipp._tcp'")
        return None
    return stype


def _subtypes(value: object, doc: Document) -> tuple[str, ...] | None:
    if value is None:
        return ()
    checked = parse_list(
        value,
        "spec.subtypes",
        doc,
        what="subtypes",
        example="[_universal]",
        min_items=0,
        max_items=MAX_SUBTYPES,
    )
    if checked is None:
        return None
    items, ok = checked
    out = []
    for sub, item in items:
        if not _SUBTYPE_RE.fullmatch(item):
            doc.add(sub, f"{short(item)} is not a subtype label", "write e.g. '_universal'")
            ok = False
        else:
            out.append(item.lower() if item.startswith("_") else "_" + item.lower())
    return tuple(out) if ok else None


def _host(value: object, doc: Document) -> str | None:
    if value is None:
        doc.add("spec.host", "required field is missing", "add e.g. 'host: printer'")
    elif not isinstance(value, str):
        doc.add("spec.host", f"expected a string, got {type_name(value)}", "quote it")
    elif not _HOST_RE.fullmatch(value):
        doc.add(
            "spec.host",
            f"{short(value)} is not a host label",
            "use letters, digits and '-' (at most 63), e.g. 'printer' for printer.local",
        )
    else:
        return value.lower()
    return None


def _addresses(value: object, doc: Document) -> tuple[str, ...] | None:
    if value is None:
        return ()
    checked = parse_list(
        value,
        "spec.addresses",
        doc,
        what="IP addresses",
        example="[10.10.0.50]",
        min_items=0,
        max_items=MAX_ADDRESSES,
    )
    if checked is None:
        return None
    items, ok = checked
    out = []
    for sub, item in items:
        try:
            ip = ipaddress.ip_address(item)
        except ValueError:
            doc.add(sub, f"{short(item)} is not an IP address", "write e.g. 10.10.0.50")
            ok = False
            continue
        if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
            doc.add(sub, f"{ip} is not a host's unicast address", "write the device's address")
            ok = False
            continue
        out.append(str(ip))
    return tuple(out) if ok else None


def _port(value: object, doc: Document) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535:
        return value
    if value is None:
        doc.add("spec.port", "required field is missing", "add e.g. 'port: 631'")
    else:
        doc.add(
            "spec.port",
            f"expected a port number 0-65535, got {type_name(value)}",
            "write the number unquoted, e.g. 'port: 631' (0: no service on this host)",
        )
    return None


def _txt(value: object, doc: Document) -> tuple[tuple[str, str], ...] | None:
    if value is None:
        return ()
    if not isinstance(value, dict):
        doc.add(
            "spec.txt",
            f"expected a mapping of key: value, got {type_name(value)}",
            "write e.g. 'txt: {rp: printers/office, pdl: application/pdf}'",
        )
        return None
    if len(value) > MAX_TXT_ENTRIES:
        doc.add("spec.txt", f"more than {MAX_TXT_ENTRIES} entries", "remove some")
        return None
    out: list[tuple[str, str]] = []
    ok = True
    seen: set[str] = set()
    total = 0
    for key, val in value.items():
        path = f"spec.txt.{key}"
        if not isinstance(key, str) or not _TXT_KEY_RE.fullmatch(key):
            doc.add(
                path,
                f"{short(key)} is not a TXT key",
                "use 1-63 printable ASCII characters without '=' (RFC 6763 §6.4)",
            )
            ok = False
            continue
        if key.lower() in seen:
            doc.add(path, "the key is given twice (keys are case-insensitive)", "keep one")
            ok = False
            continue
        seen.add(key.lower())
        if not isinstance(val, str):
            doc.add(path, f"expected a string, got {type_name(val)}", "quote the value")
            ok = False
            continue
        size = len(key.encode()) + 1 + len(val.encode())
        if size > MAX_TXT_ENTRY_OCTETS:
            doc.add(path, f"key=value is longer than {MAX_TXT_ENTRY_OCTETS} octets", "shorten it")
            ok = False
            continue
        total += size + 1
        out.append((key, val))
    if ok and total > MAX_TXT_OCTETS:
        doc.add("spec.txt", f"more than {MAX_TXT_OCTETS} octets in all", "shorten the values")
        ok = False
    return tuple(out) if ok else None
