"""The ServicePolicy resource: its fields, limits and patterns (shared with the CRD), its error."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from ..dnssd import SUBTYPE_TEXT, strip_local
from ..errors import GatewayError

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

Action = Literal["allow", "deny"]

# status: the API server drops it from what is applied (the CRD has a status subresource), so
# a file may hold it (e.g. one exported with kubectl get -o yaml); it is ignored
_TOP_KEYS: Final = ("apiVersion", "kind", "metadata", "spec", "status")
_META_KEYS: Final = ("name", "namespace", "labels", "annotations")
_SPEC_KEYS: Final = (
    "from", "to", "services", "instances", "hosts", "action", "reflect", "wideArea",
)  # fmt: skip
_INSTANCE_KEYS: Final = ("allow", "deny")


class PolicyError(GatewayError):
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
        """``"name (file, document n)"``, for messages; ``"name (origin)"`` for document 0 (an
        object of the Kubernetes API: the origin names it)."""
        if self.source[1] == 0:
            return f"{self.name} ({self.source[0]})"
        return f"{self.name} ({self.source[0]}, document {self.source[1]})"


# ------------------------------------------------------------------------------------------------
# Service names
# ------------------------------------------------------------------------------------------------


def normalize_service_type(text: str) -> str:
    """``"_IPP._tcp.local."`` -> ``"_ipp._tcp"``; ``"*"`` stays. Raises ValueError otherwise."""
    if len(text) <= MAX_SERVICE_LENGTH and _SERVICE_RE.fullmatch(text):
        return text if text == ANY else strip_local(text.lower())
    raise ValueError(_service_reason(text))


def split_service_name(text: str) -> tuple[str, str | None]:
    """Split ``"My Printer._ipp._tcp"`` into ``("_ipp._tcp", "My Printer")``.

    A bare type gives ``(type, None)``; a subtype gives its parent type. A trailing ``.local.`` is
    dropped. The instance may hold spaces and dots; only the last two labels form the type.
    Raises ValueError when no ``_name._tcp`` / ``_name._udp`` type ends the name.
    """
    name = strip_local(text.strip())
    sub = SUBTYPE_TEXT.fullmatch(name)
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
    if SUBTYPE_TEXT.fullmatch(strip_local(text)):
        return f"{text!r} is a subtype; subtypes follow their parent type"
    return f"{text!r} is not a service type of the form '_name._tcp' or '_name._udp' (or \"*\")"


def _service_fix(text: str) -> str:
    bare = strip_local(text)
    sub = SUBTYPE_TEXT.fullmatch(bare)
    if sub:
        return f"use the parent type {sub.group(1).lower()!r}"
    if bare and not bare.startswith("_") and _SERVICE_RE.fullmatch("_" + bare):
        return f"service types start with '_': write {'_' + bare.lower()!r}"
    if re.fullmatch(r"_[A-Za-z0-9_-]+", bare):
        return f"add the protocol: {bare.lower() + '._tcp'!r} or {bare.lower() + '._udp'!r}"
    return "write a DNS-SD service type such as '_ipp._tcp', or \"*\" for every type"
