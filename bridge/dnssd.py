"""DNS-SD naming rules, written once (RFC 6762 and RFC 6763): which names are what.

Every module that asks "is this a service type, an instance, the enumeration name, a
link-local address?" asks here, so the answer is the same everywhere. Names compare
case-insensitively (RFC 1035 §2.3.3, RFC 4343): dnspython's ``Name`` already does for whole
names; label tuples are folded with ``fold`` before they are compared. Pure functions over
names, labels and raw address bytes; cheap enough for the packet path (no ``ipaddress``).
"""

from __future__ import annotations

import re
import socket
from typing import Final

import dns.name

from .mdns import wire

LOCAL_LABEL: Final = b"local"
LOCAL: Final = wire.intern((LOCAL_LABEL,))
# the service-type enumeration name (RFC 6763 §9); interned: the browser compares by identity
SERVICES_LABELS: Final = (b"_services", b"_dns-sd", b"_udp")
SERVICES: Final = wire.intern((*SERVICES_LABELS, LOCAL_LABEL))
SUB_LABEL: Final = b"_sub"  # `<subtype>._sub.<type>` (RFC 6763 §7.1)
PROTOCOL_LABELS: Final = (b"_tcp", b"_udp")
# browse and registration domain queries `<x>._dns-sd._udp.<domain>` (RFC 6763 §11)
DNSSD_UDP: Final = (b"_dns-sd", b"_udp")
BROWSE_LABELS: Final = {b"b": "all", b"db": "default", b"lb": "default"}
REGISTRATION_LABELS: Final = frozenset({b"r", b"dr"})

# a subtype in text form, ``_printer._sub._http._tcp``: group 1 is its parent type
SUBTYPE_TEXT: Final = re.compile(r"^_[^.]+\._sub\.(_[^.]+\._(?:tcp|udp))$", re.IGNORECASE)

ServiceParts = tuple[str, str | None]  # (service type "_http._tcp", instance label or None)


def fold(labels: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """Labels lower-cased (ASCII only, as DNS does), for comparing label tuples."""
    return tuple([label.lower() for label in labels])


def is_local(name: dns.name.Name) -> bool:
    """In ``local.`` (the mDNS namespace), any case."""
    labels = name.labels
    return len(labels) >= 2 and labels[-2].lower() == LOCAL_LABEL


def is_services(name: dns.name.Name) -> bool:
    """``_services._dns-sd._udp.local.``, any case: the service-type enumeration name."""
    labels = name.labels
    return (
        len(labels) == 5
        and labels[0].lower() == b"_services"
        and labels[1].lower() == b"_dns-sd"
        and labels[2].lower() == b"_udp"
        and labels[3].lower() == LOCAL_LABEL
    )


def service_parts(name: dns.name.Name) -> ServiceParts | None:
    """(service type, instance) of a ``.local`` type, subtype or instance name, else None.

    The type is lower-cased (``_http._tcp``); a subtype gives its parent type and no
    instance; the instance label is kept as is (it may hold dots and spaces).
    """
    labels = name.labels  # the root label last: ``_http._tcp.local.`` has four
    n = len(labels)
    if (
        n < 4
        or labels[-2].lower() != LOCAL_LABEL
        or labels[-3].lower() not in PROTOCOL_LABELS
        or not labels[-4].startswith(b"_")
    ):
        return None
    stype = (labels[-4] + b"." + labels[-3]).decode("ascii", "replace").lower()
    if n == 4:
        return stype, None
    if n == 5:
        return stype, labels[0].decode("utf-8", "replace")
    if n == 6 and labels[1].lower() == SUB_LABEL:
        return stype, None
    return None


def is_browse_target(name: dns.name.Name) -> bool:
    """A service type or subtype name (what one browses for with PTR); ``service_parts``
    without decoding: the browser asks it of every PTR it stores."""
    labels = name.labels
    n = len(labels)
    if n == 6 and labels[1].lower() == SUB_LABEL:
        n = 4
    return (
        n == 4
        and labels[-2].lower() == LOCAL_LABEL
        and labels[-3].lower() in PROTOCOL_LABELS
        and labels[-4].startswith(b"_")
    )


def browse_query(relative: tuple[bytes, ...]) -> str | None:
    """For labels relative to a domain: "all" (``b``), "default" (``db``, ``lb``), else None."""
    if len(relative) != 3 or fold(relative[1:]) != DNSSD_UDP:
        return None
    return BROWSE_LABELS.get(relative[0].lower())


def is_dnssd_meta(relative: tuple[bytes, ...]) -> bool:
    """``_dns-sd._udp``, ``_udp`` or ``<x>._dns-sd._udp`` below a domain: names that exist
    (empty non-terminals, registration-domain queries) and so answer NODATA, not NXDOMAIN."""
    folded = fold(relative)
    return folded in (DNSSD_UDP, DNSSD_UDP[1:]) or (len(folded) == 3 and folded[1:] == DNSSD_UDP)


def strip_local(text: str) -> str:
    """A textual name without its trailing dot and ``.local`` (any case), e.g. ``_ipp._tcp``."""
    text = text.removesuffix(".")
    if text.lower().endswith(".local"):
        text = text[: -len(".local")]
    return text


def service_type_text(text: str) -> str:
    """A textual service type as the policy engine keys it: lower case, no ``.local``, a
    subtype replaced by its parent type (``_Printer._sub._HTTP._tcp.local.`` -> ``_http._tcp``)."""
    stype = strip_local(text.lower())
    sub = SUBTYPE_TEXT.fullmatch(stype)
    return sub.group(1) if sub else stype


def service_type_name(stype: str) -> dns.name.Name:
    """``_http._tcp`` -> ``_http._tcp.local.``"""
    return dns.name.from_text(stype.rstrip(".") + ".local.")


def instance_name(label: str, stype: str) -> dns.name.Name:
    """``<label>.<stype>.local.`` keeping the label as is (spaces, dots, parentheses)."""
    return dns.name.Name((label.encode(), *service_type_name(stype).labels))


def subtype_name(subtype: str, stype: str) -> dns.name.Name:
    """``_universal``, ``_ipp._tcp`` -> ``_universal._sub._ipp._tcp.local.``"""
    return dns.name.Name((subtype.encode(), SUB_LABEL, *service_type_name(stype).labels))


def host_name(label: str) -> dns.name.Name:
    """``<label>.local.``"""
    return dns.name.Name((label.encode(), *LOCAL.labels))


def is_link_local(raw: bytes) -> bool:
    """169.254/16 or fe80::/10, for an address as its 4 or 16 network-order octets."""
    if len(raw) == 4:
        return raw[0] == 169 and raw[1] == 254
    return len(raw) == 16 and raw[0] == 0xFE and raw[1] & 0xC0 == 0x80


def address_octets(text: str) -> bytes:
    """An A or AAAA rdata's text address as its network-order octets."""
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def is_link_local_text(text: str) -> bool:
    """``is_link_local`` for a textual address (a zone index ``%eth0`` is ignored)."""
    return is_link_local(address_octets(text.split("%", 1)[0]))
