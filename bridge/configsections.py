"""The optional sections' frozen values (``chrony:``, ``policies: {kubernetes: ...}``,
``wide_area:``, ``dhcp:``), apart from bridge/config.py so that a start without them does not
define them: each dataclass is ~4 M instructions before the first answer on Python 3.11
(docs/performance.md, "Start-up"). bridge.config's parsers import them when the section is
there and build them; their components import them from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import dns.name

from . import const
from .config import Address

if TYPE_CHECKING:
    from .widearea.tsigkey import TsigKey


@dataclass(frozen=True, slots=True)
class ChronyServer:
    """One chronyd whose NTP service is advertised while it is healthy."""

    name: str  # DNS label: the mDNS instance name and, by default, the SRV target host name
    control: Address | str  # chronyd command port (host, port), or its unix socket path
    # VLAN -> addresses where this server's NTP service is reached; empty: the gateway's own
    # addresses on each advertised VLAN (a chronyd on the router itself)
    addresses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    host: str = ""  # SRV target host label (default: name)
    priority: int = 0  # SRV priority: lower is preferred (default: position in the list)
    weight: int = 0  # SRV weight among servers of equal priority
    nts: bool = False  # also advertise _ntske._tcp (NTS key establishment, port 4460)


@dataclass(frozen=True, slots=True)
class ChronyConfig:
    servers: tuple[ChronyServer, ...]
    max_offset_seconds: float = const.CHRONY_MAX_OFFSET  # s; |system time offset| bound
    vlans: tuple[str, ...] = ()  # VLANs the service is advertised on (all of them by default)


@dataclass(frozen=True, slots=True)
class KubernetesPolicies:
    """ServicePolicy objects read from the Kubernetes API instead of a directory."""

    namespace: str  # the namespace watched; "*": every namespace
    node_name: str  # this gateway's key in each object's status.gateways[] (several may run)
    kubeconfig: Path | None = None  # None: in-cluster service account, else $KUBECONFIG


@dataclass(frozen=True, slots=True)
class WideAreaConfig:
    """Wide-area publishing (bridge/widearea): RFC 2136 UPDATEs signed with TSIG."""

    server: Address  # the zone's primary: UPDATEs and the TSIG AXFR go there
    zone: dns.name.Name  # the gateway publishes under <vlan>.<zone>
    key: TsigKey  # read from tsig.secret_file at load time
    ttl: int = const.WIDEAREA_DEFAULT_TTL  # s; the TTL of every published record
    reconcile_interval: float = const.WIDEAREA_RECONCILE_INTERVAL  # s; between zone transfers


@dataclass(frozen=True, slots=True)
class LeaseFile:
    """A DHCP server's lease file: ``dnsmasq`` (its lease file) or ``kea`` (memfile CSV)."""

    format: str
    path: Path


@dataclass(frozen=True, slots=True)
class DhcpConfig:
    """Lease host names published as ``<host>.<VLAN domain>`` (and by mDNS if asked)."""

    leases: tuple[LeaseFile, ...]
    publish_mdns: bool = False  # also announce <host>.local on the lease's VLAN
