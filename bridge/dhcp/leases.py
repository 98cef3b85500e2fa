"""DHCP lease files -> leases (pure): dnsmasq's lease file and Kea's memfile CSV (v4 and v6).

Both are read whole, as the servers write them: dnsmasq rewrites its file in place on every
change (one line per lease, ``duid`` once before the IPv6 ones); Kea's memfile appends a row per
change (the last row of an address wins; a released or deleted lease is a row with valid lifetime
0) until its lease file cleanup renames a compacted file over it. A line that cannot be read is
counted and skipped, never fatal: a half-written last line is the usual one.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

#: Kea's infinite valid lifetime (0xffffffff): the lease never expires
KEA_INFINITE: Final = 0xFFFFFFFF
#: Kea lease states (src/lib/dhcpsrv/lease.h): only "default" is a lease in use
KEA_STATE_DEFAULT: Final = 0
#: Kea v6 lease types: 0 IA_NA (an address), 1 IA_TA, 2 IA_PD (a prefix: no host address)
KEA_PREFIX: Final = 2
FORMATS: Final = ("dnsmasq", "kea")


@dataclass(frozen=True, slots=True)
class Lease:
    """One lease as the server wrote it. ``expires`` is a Unix time, None: never."""

    address: str
    hostname: str  # as written ("" for none); validated later, per VLAN (see hostnames.py)
    client: str  # MAC, client id or DUID: who holds it
    expires: float | None

    def active(self, now: float) -> bool:
        return self.expires is None or self.expires > now


@dataclass(frozen=True, slots=True)
class Parsed:
    """A lease file's leases in use (by address: the last word on each) and its bad lines."""

    leases: tuple[Lease, ...]
    malformed: int


def parse(fmt: str, text: str) -> Parsed:
    if fmt == "dnsmasq":
        return parse_dnsmasq(text)
    if fmt == "kea":
        return parse_kea(text)
    raise ValueError(f"unknown lease file format {fmt!r}; use one of {', '.join(FORMATS)}")


def parse_dnsmasq(text: str) -> Parsed:
    """``<expiry> <mac|iaid> <address> <hostname|*> <client-id|duid|*>`` per line; a
    ``duid <server duid>`` line precedes the IPv6 leases; expiry 0 is an infinite lease."""
    leases: dict[str, Lease] = {}
    malformed = 0
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] == "duid":
            continue
        if len(fields) < 4:
            malformed += 1
            continue
        try:
            expiry = int(fields[0])
            ip = ipaddress.ip_address(fields[2])
        except ValueError:
            malformed += 1
            continue
        if expiry < 0:
            malformed += 1
            continue
        hostname = "" if fields[3] == "*" else fields[3]
        client = fields[1] if ip.version == 4 else (fields[4] if len(fields) > 4 else fields[1])
        leases[str(ip)] = Lease(str(ip), hostname, client, None if expiry == 0 else float(expiry))
    return Parsed(tuple(leases.values()), malformed)


_KEA_V4: Final = ("address", "hwaddr", "valid_lifetime", "expire", "hostname", "state")
_KEA_V6: Final = ("address", "duid", "valid_lifetime", "expire", "lease_type", "hostname", "state")
_KEA_ESCAPE: Final = re.compile(r"&#x([0-9A-Fa-f]{2})")


def _kea_unescape(text: str) -> str:
    """Kea writes a comma in a field as ``&#x2c`` (CSVRow::escapeCharacters)."""
    return _KEA_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def parse_kea(text: str) -> Parsed:
    """A Kea memfile (``kea-leases4.csv`` or ``kea-leases6.csv``, told apart by the header).

    Rows are read in order and the last row of an address is its state: a lease in use has
    state 0 and a valid lifetime above 0 (a released or reclaimed lease is rewritten with
    lifetime 0 or state 2); ``expire`` is its end as a Unix time. IPv6 prefix delegations
    (lease type 2) name no host address and are skipped. A header line repeated (LFC merges
    files) starts the columns again.
    """
    lines = text.splitlines()
    columns: dict[str, int] | None = None
    rows: dict[str, Lease | None] = {}
    malformed = 0
    for line in lines:
        if not line.strip():
            continue
        fields = line.split(",")
        if fields[0] == "address":
            columns = {name: i for i, name in enumerate(fields)}
            wanted = _KEA_V6 if "duid" in columns else _KEA_V4
            if any(name not in columns for name in wanted):
                columns = None
                malformed += 1
            continue
        if columns is None or len(fields) < len(columns):
            malformed += 1
            continue
        v6 = "duid" in columns
        try:
            ip = ipaddress.ip_address(fields[columns["address"]])
            lifetime = int(fields[columns["valid_lifetime"]])
            expire = int(fields[columns["expire"]])
            state = int(fields[columns["state"]] or 0)
            kind = int(fields[columns["lease_type"]]) if v6 else 0
        except ValueError:
            malformed += 1
            continue
        if kind == KEA_PREFIX:
            continue
        address = str(ip)
        rows.pop(address, None)  # keep the file's order of last words
        if lifetime == 0 or state != KEA_STATE_DEFAULT:
            rows[address] = None  # released, expired-reclaimed or declined
            continue
        client = fields[columns["duid" if v6 else "hwaddr"]]
        hostname = _kea_unescape(fields[columns["hostname"]])
        rows[address] = Lease(
            address, hostname, client, None if lifetime == KEA_INFINITE else float(expire)
        )
    return Parsed(tuple(lease for lease in rows.values() if lease is not None), malformed)
