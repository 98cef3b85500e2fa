"""Differences -> signed RFC 2136 UPDATE messages; answers -> outcomes; a zone transfer ->
the records the gateway owns there. Pure (dnspython's ``dns.update`` and ``dns.tsig`` build
and sign; nothing here opens a socket).

Every change is one rdata added or deleted (``delete NAME TYPE RDATA``), never a delete of
all types at a name (type ANY): Knot refuses that when its ACL lists ``update-type``, and
deleting only our own rdatas leaves anything else at the browse names alone. A replaced
RRset (a new port) is its old rdata's delete and its new rdata's add in one message, which
the server applies atomically (RFC 2136 §3.7). Each message carries the Update Lease EDNS
option (RFC 9664) with the records' TTL as the lease: servers that honour it will expire what
a vanished gateway leaves; Knot and BIND ignore it, hence the reconciliation.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import dns.edns
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.tsig
import dns.update
import dns.xfr
import dns.zone

from .. import const
from .desired import Ownership, Rec
from .tsigkey import TsigKey

UPDATE_LEASE = 2  # EDNS option code of the Update Lease (RFC 9664 §3)

# outcome kinds, as the metric's ``result`` label has them
OK = "ok"
TIMEOUT = "timeout"  # no answer in time
NETWORK = "network"  # connection refused, unreachable, reset
SERVFAIL = "servfail"
REFUSED = "refused"
NOTAUTH = "notauth"
BADKEY = "badkey"
BADSIG = "badsig"
BADTIME = "badtime"
UNSIGNED = "unsigned"  # an answer without the TSIG we asked for (the key or zone unknown)
OTHER = "error"  # any other rcode (FORMERR, NOTZONE, ...): a record the server will not take
RESULTS = (
    OK,
    TIMEOUT,
    NETWORK,
    SERVFAIL,
    REFUSED,
    NOTAUTH,
    BADKEY,
    BADSIG,
    BADTIME,
    UNSIGNED,
    OTHER,
)
TRANSIENT = frozenset({TIMEOUT, NETWORK, SERVFAIL})  # retried with backoff
# what each configuration problem most likely means, for the one log line that says so
LIKELY_FIX = {
    REFUSED: "the server's update-policy (BIND) or ACL (Knot) does not grant this key these "
    "names or types, or the zone is not dynamic: grant the key the VLAN subdomains and the "
    "b/db/lb._dns-sd._udp browse names (README, Wide-area publishing)",
    NOTAUTH: "the server is not authoritative for the zone, or its ACL does not list this "
    "key: check wide_area.zone and the server's zone and ACL",
    BADKEY: "the server does not know this key name and algorithm, or (Knot) its ACL denies "
    "these names or types: compare tsig.name/algorithm with the server's key and the ACL's "
    "update-owner-name and update-type",
    BADSIG: "the secret differs from the server's: copy the key file the server uses",
    BADTIME: "the clocks of the gateway and the server differ by more than 5 minutes: "
    "synchronise them (NTP)",
    UNSIGNED: "the server answered without a signature: it does not serve the zone or does "
    "not know the key; check wide_area.server, wide_area.zone and the server's key",
}


@dataclass(frozen=True, slots=True)
class Change:
    rec: Rec
    add: bool  # False: delete this rdata


def messages(
    changes: Iterable[Change],
    zone: dns.name.Name,
    key: TsigKey,
    ttl: int,
    max_records: int = const.WIDEAREA_UPDATE_MAX_RECORDS,
) -> Iterator[tuple[dns.update.UpdateMessage, list[Change]]]:
    """The UPDATEs applying ``changes`` (one group's: a VLAN or the apex), each with the
    changes it carries, built one at a time (the sender awaits between them): deletes before
    adds within a message, at most ``max_records`` changes per message, and an RRset's changes
    in one message unless they alone are more (a type's PTR RRset of a thousand instances: its
    additions need no atomicity)."""
    # keyed by the RRset's wire form (Rec.rrset): with dns.name.Name keys, hashed by
    # lower-casing every label each time, the first message of a group of 40,000 changes
    # took 72-82 ms of CPU, with the bytes 13-16 ms (time.thread_time, collector off)
    rrsets: dict[bytes, list[Change]] = {}
    for change in changes:
        rrsets.setdefault(change.rec.rrset, []).append(change)
    # batches are cut as the messages are asked for: each step costs one message's work,
    # however many changes the group has
    keyring = key.keyring()
    batch: list[Change] = []
    for group in rrsets.values():
        for start in range(0, len(group), max_records):
            piece = group[start : start + max_records]
            if batch and len(batch) + len(piece) > max_records:
                yield _update(batch, zone, key, keyring, ttl), batch
                batch = []
            batch.extend(piece)
    if batch:
        yield _update(batch, zone, key, keyring, ttl), batch


def _update(
    batch: list[Change],
    zone: dns.name.Name,
    key: TsigKey,
    keyring: dict[dns.name.Name, dns.tsig.Key],
    ttl: int,
) -> dns.update.UpdateMessage:
    msg = dns.update.UpdateMessage(
        zone, keyring=keyring, keyname=key.name, keyalgorithm=key.algorithm
    )
    # payload: dnspython renders a message no larger than its own EDNS payload size (the
    # default, 1,232 B, refused every UPDATE of more than about ten records with TooBig)
    msg.use_edns(0, payload=const.WIDEAREA_MAX_MESSAGE, options=[lease_option(ttl)])
    for c in batch:
        if not c.add:
            msg.delete(c.rec.owner, c.rec.rdata)
    for c in batch:
        if c.add:
            msg.add(c.rec.owner, ttl, c.rec.rdata)
    return msg


def lease_option(ttl: int) -> dns.edns.Option:
    """RFC 9664: the LEASE (s) the records are good for; no KEY-LEASE (no SIG(0) keys)."""
    return dns.edns.GenericOption(dns.edns.OptionType.make(UPDATE_LEASE), struct.pack("!I", ttl))


def axfr_query(zone: dns.name.Name, key: TsigKey) -> dns.message.Message:
    """A TSIG-signed AXFR of the zone (the gateway's view of what the server holds)."""
    query = dns.message.make_query(zone, "AXFR")
    query.use_tsig(key.keyring(), key.name, algorithm=key.algorithm)
    return query


_RCODES: dict[int, str] = {
    dns.rcode.NOERROR: OK,
    dns.rcode.SERVFAIL: SERVFAIL,
    dns.rcode.REFUSED: REFUSED,
    dns.rcode.NOTAUTH: NOTAUTH,
}


def outcome(rcode: int) -> str:
    """The kind of an answer's rcode (its TSIG errors surface as exceptions, see ``failure``)."""
    return _RCODES.get(rcode, OTHER)


def failure(exc: BaseException) -> str:
    """The kind of what dnspython raised while sending or verifying."""
    if isinstance(exc, dns.tsig.PeerBadKey):
        return BADKEY
    if isinstance(exc, dns.tsig.PeerBadSignature):
        return BADSIG
    if isinstance(exc, dns.tsig.PeerBadTime):
        return BADTIME
    if isinstance(exc, dns.exception.Timeout | TimeoutError):
        return TIMEOUT
    if isinstance(exc, dns.exception.FormError) and "TSIG" in str(exc):
        return UNSIGNED
    if isinstance(exc, dns.xfr.TransferError):
        return outcome(exc.rcode)
    if isinstance(exc, OSError | EOFError | ConnectionError):
        return NETWORK
    return OTHER


def owned(
    zone: dns.zone.Zone, origin: dns.name.Name, vlans: Iterable[str], ttl: int
) -> tuple[dict[bytes, Rec], set[bytes]]:
    """The records the gateway owns in a transferred zone (``desired.ours``) by key, and the
    keys of those whose TTL is not ``ttl`` (to be added again: a changed ``wide_area.ttl``)."""
    found: dict[bytes, Rec] = {}
    stale: set[bytes] = set()
    ownership = Ownership(origin, vlans)
    for name, node in zone.items():
        owner = name if name.is_absolute() else name.derelativize(origin)
        for rdataset in node:
            for rdata in rdataset:
                group = ownership.group(owner, rdataset.rdtype, rdata)
                if group is None:
                    continue
                rec = Rec(group, owner, rdataset.rdtype, rdata)
                found[rec.key] = rec
                if rdataset.ttl != ttl:
                    stale.add(rec.key)
    return found, stale


def reconcile(
    desired: Mapping[bytes, Rec], held: Mapping[bytes, Rec], stale: set[bytes]
) -> tuple[list[Change], list[Change]]:
    """(additions, deletions) that make the zone's ``held`` records the ``desired`` ones."""
    adds = [Change(r, True) for k, r in desired.items() if k not in held or k in stale]
    deletes = [Change(r, False) for k, r in held.items() if k not in desired]
    return adds, deletes
