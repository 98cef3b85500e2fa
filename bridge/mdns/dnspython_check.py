"""What bridge/mdns/wire.py relies on inside dnspython, checked against the dnspython installed.

The parser builds names and rdata the way dnspython's unpickling does (``object.__new__`` and
the slots set directly, skipping the validating ``__init__``), gives dnspython's names and its
own one seeded hash (set on ``dns.name.Name`` by wire.py: a name's hash must not depend on who
made it), and records each rdata's canonical wire form as its digest
(what ``Rdata.to_digestable`` returns). None of that is dnspython's public API: a release that
adds a slot, changes the name hash or the digestable form would make parsed records differ
from, or miss as dict keys, the ones dnspython makes, silently. ``verify`` compares both ways of
making the same names and records, attribute by attribute; ``python -m bridge run`` calls it
before it starts and refuses to run on a mismatch, naming the dnspython version.
"""

from __future__ import annotations

import struct

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.version

from ..errors import GatewayError
from . import wire

#: The dnspython releases the tricks are tested with (pyproject.toml pins the same range).
TESTED_RANGE = ">=2.6,<2.10"

# names with upper case (the hash and the digest are case-insensitive), one long (the old
# unseeded hash did not fit in 63 bits there)
_NAMES = (
    "Office-Printer._IPP._tcp.local.",
    "local.",
    ".".join(["a-rather-long-label-of-forty-octets-abcd"] * 6) + ".",
)
# owner, type, rdata text: every type wire.py builds without dnspython's constructors
_RECORDS = (
    ("printer.local.", "A", "10.20.0.5"),
    ("printer.local.", "AAAA", "fd00:20::5"),
    ("_ipp._tcp.local.", "PTR", r"Office\032Printer._ipp._tcp.local."),
    (r"Office\032Printer._ipp._tcp.local.", "SRV", "0 0 631 Office-Printer.Local."),
    (r"Office\032Printer._ipp._tcp.local.", "TXT", '"rp=printer" "" "note=x"'),
)


_HEADER = struct.Struct("!6H")
_RR = struct.Struct("!HHIH")


class DnspythonMismatch(GatewayError):
    """The installed dnspython no longer works as the parser's shortcuts assume."""


def _attributes(obj: object) -> dict[str, object]:
    """Every slot along the class's MRO, and the instance dict if it has one."""
    names = {s for cls in type(obj).__mro__ for s in getattr(cls, "__slots__", ())}
    names.discard("__weakref__")
    names.discard("__dict__")
    found = {n: getattr(obj, n, _MISSING) for n in sorted(names)}
    found.update(getattr(obj, "__dict__", {}))
    return found


_MISSING = object()


def _compare(what: str, ours: object, theirs: object, problems: list[str]) -> None:
    if not isinstance(ours, type(theirs)):
        problems.append(f"{what}: type {type(ours).__name__} is not {type(theirs).__name__}")
        return
    mine, real = _attributes(ours), _attributes(theirs)
    for attr, value in real.items():  # wire's Name adds memos of its own: not compared
        got = mine.get(attr, _MISSING)
        if got is _MISSING:
            problems.append(f"{what}: attribute {attr!r} is not set by wire.py")
        elif got != value:
            problems.append(f"{what}: attribute {attr!r} is {got!r}, dnspython's {value!r}")


def problems() -> list[str]:
    """What differs between wire.py's names and records and dnspython's own (empty: none)."""
    found: list[str] = []
    for text in _NAMES:
        theirs = dns.name.from_text(text)
        ours = wire.intern(theirs.labels[:-1])
        _compare(f"name {text}", ours, theirs, found)
        if hash(ours) != hash(theirs):
            found.append(f"name {text}: hash {hash(ours)} is not dnspython's {hash(theirs)}")
        if not (ours == theirs and theirs == ours and {theirs: 1}.get(ours) == 1):
            found.append(f"name {text}: not equal to, or not found as, dnspython's")
        if ours.canonical != theirs.canonicalize().to_wire():  # type: ignore[attr-defined]
            found.append(f"name {text}: canonical form is not dnspython's")
    for owner, rdtype, text in _RECORDS:
        theirs_rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text)
        # rendered here, uncompressed: what the parser reads, not what wire.encode writes
        rdata, owner_wire = theirs_rd.to_wire(), dns.name.from_text(owner).to_wire()
        assert rdata is not None and owner_wire is not None  # no file given: bytes returned
        packet = (
            _HEADER.pack(0, wire.FLAG_QR, 0, 1, 0, 0)
            + owner_wire
            + _RR.pack(theirs_rd.rdtype, dns.rdataclass.IN, 120, len(rdata))
            + rdata
        )
        (rec,) = wire.parse(packet).answers
        what = f"{rdtype} {text}"
        _compare(what, rec.rdata, theirs_rd, found)
        if rec.rdata != theirs_rd or hash(rec.rdata) != hash(theirs_rd):
            found.append(f"{what}: not equal to dnspython's, or hashed differently")
        if rec.rdata.to_text() != theirs_rd.to_text():
            found.append(
                f"{what}: reads {rec.rdata.to_text()!r}, dnspython {theirs_rd.to_text()!r}"
            )
        if rec.digest is not None and rec.digest != theirs_rd.to_digestable():
            found.append(f"{what}: digest {rec.digest!r} is not to_digestable()'s")
    return found


def verify() -> None:
    """Raise DnspythonMismatch, naming the dnspython version and what broke, on any difference."""
    found = problems()
    if found:
        raise DnspythonMismatch(
            f"dnspython {dns.version.version} breaks what bridge/mdns/wire.py relies on: "
            + "; ".join(found)
            + f". Fix: install a dnspython release in the tested range {TESTED_RANGE} "
            "(pip install 'dnspython" + TESTED_RANGE + "')"
        )
