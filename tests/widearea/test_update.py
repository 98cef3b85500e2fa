"""Differences -> signed UPDATE messages, answers -> outcomes, a transferred zone -> what the
gateway owns there (dnspython builds, signs and verifies: no hand-written TSIG)."""

from __future__ import annotations

import struct

import dns.exception
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.tsig
import dns.xfr
import dns.zone

from bridge.widearea import update
from bridge.widearea.desired import APEX, Rec
from bridge.widearea.tsigkey import ALGORITHMS, TsigKey

ZONE = dns.name.from_text("dnssd.example.test.")
KEY = TsigKey(dns.name.from_text("mdns-gateway."), ALGORITHMS["hmac-sha256"], b"k" * 32)
SRV = dns.rdatatype.SRV
PTR = dns.rdatatype.PTR
INST = dns.name.from_text("Living\\032Room._ipp._tcp.iot.dnssd.example.test.")


def rec(
    owner: dns.name.Name | str, rdtype: dns.rdatatype.RdataType, text: str, group: str = "iot"
) -> Rec:
    name = owner if isinstance(owner, dns.name.Name) else dns.name.from_text(owner)
    return Rec(group, name, rdtype, dns.rdata.from_text("IN", rdtype, text))


def received(msg: dns.message.Message) -> dns.message.Message:
    """What the server parses: the signed wire form, verified with the same key."""
    wire = msg.to_wire()
    parsed = dns.message.from_wire(wire, keyring=KEY.keyring())
    assert parsed.had_tsig
    return parsed


def test_a_port_change_is_one_signed_update_delete_then_add() -> None:
    old = rec(INST, SRV, "0 0 631 tv.iot.dnssd.example.test.")
    new = rec(INST, SRV, "0 0 632 tv.iot.dnssd.example.test.")
    ((msg, changes),) = update.messages(
        [update.Change(new, True), update.Change(old, False)], ZONE, KEY, 120
    )
    assert [c.add for c in changes] == [True, False]
    got = received(msg)
    assert got.opcode() == dns.opcode.UPDATE
    assert got.question[0].name == ZONE  # the zone section
    rrsets = got.authority  # the update section
    assert [(r.deleting, r.ttl, [d.to_text() for d in r]) for r in rrsets] == [
        (dns.rdataclass.NONE, 0, ["0 0 631 tv.iot.dnssd.example.test."]),  # delete this rdata
        (None, 120, ["0 0 632 tv.iot.dnssd.example.test."]),
    ]


def test_the_update_lease_option_carries_the_ttl() -> None:
    ((msg, _),) = update.messages(
        [update.Change(rec(INST, SRV, "0 0 1 a.test."), True)], ZONE, KEY, 120
    )
    got = received(msg)
    lease = [o for o in got.options if o.otype == update.UPDATE_LEASE]
    assert len(lease) == 1 and lease[0].to_wire() == struct.pack("!I", 120)


def test_no_delete_of_all_types_at_a_name() -> None:
    """Knot refuses type ANY deletes under an ACL listing update-type: only rdata deletes."""
    change = update.Change(rec(INST, SRV, "0 0 1 a.test."), False)
    msgs = list(update.messages([change], ZONE, KEY, 120))
    for msg, _ in msgs:
        for rrset in received(msg).authority:
            assert rrset.rdtype != dns.rdatatype.ANY and rrset.deleting == dns.rdataclass.NONE


def test_a_huge_rrset_is_split_and_every_message_fits() -> None:
    """A type's PTR RRset of 1,000 instances: dnspython refused the one message (TooBig)."""
    owner = dns.name.from_text("_ipp._tcp.iot.dnssd.example.test.")
    changes = [
        update.Change(
            rec(owner, PTR, f"Printer\\032{i:04}._ipp._tcp.iot.dnssd.example.test."), True
        )
        for i in range(1000)
    ]
    msgs = list(update.messages(changes, ZONE, KEY, 120))
    assert sum(len(c) for _, c in msgs) == 1000
    assert all(len(m.to_wire()) < 65535 for m, _ in msgs)


def test_large_batches_split_by_rrset_never_inside_one() -> None:
    changes = []
    for i in range(5):
        owner = f"h{i}.iot.dnssd.example.test."
        changes += [
            update.Change(rec(owner, dns.rdatatype.A, "10.0.0.1"), False),
            update.Change(rec(owner, dns.rdatatype.A, "10.0.0.2"), True),
        ]
    msgs = list(update.messages(changes, ZONE, KEY, 120, max_records=4))
    assert [len(c) for _, c in msgs] == [4, 4, 2]
    for _, carried in msgs:
        owners = {c.rec.owner for c in carried}
        assert all(sum(c.rec.owner == o for c in carried) == 2 for o in owners)


def test_a_wrong_secret_does_not_verify() -> None:
    ((msg, _),) = update.messages(
        [update.Change(rec(INST, SRV, "0 0 1 a.test."), True)], ZONE, KEY, 120
    )
    other = TsigKey(KEY.name, KEY.algorithm, b"x" * 32)
    try:
        dns.message.from_wire(msg.to_wire(), keyring=other.keyring())
    except dns.tsig.BadSignature:
        return
    raise AssertionError("a message signed with another secret verified")


def test_outcomes_of_rcodes_and_exceptions() -> None:
    assert update.outcome(dns.rcode.NOERROR) == update.OK
    assert update.outcome(dns.rcode.SERVFAIL) == update.SERVFAIL
    assert update.outcome(dns.rcode.REFUSED) == update.REFUSED
    assert update.outcome(dns.rcode.NOTAUTH) == update.NOTAUTH
    assert update.outcome(dns.rcode.NOTZONE) == update.OTHER
    assert update.failure(dns.tsig.PeerBadKey()) == update.BADKEY
    assert update.failure(dns.tsig.PeerBadSignature()) == update.BADSIG
    assert update.failure(dns.tsig.PeerBadTime()) == update.BADTIME
    assert update.failure(dns.exception.Timeout()) == update.TIMEOUT
    assert update.failure(ConnectionRefusedError()) == update.NETWORK
    assert update.failure(EOFError()) == update.NETWORK
    unsigned = dns.exception.FormError("response requires a TSIG but does not have one")
    assert update.failure(unsigned) == update.UNSIGNED
    assert update.failure(dns.xfr.TransferError(dns.rcode.REFUSED)) == update.REFUSED
    assert update.failure(ValueError("x")) == update.OTHER
    assert {update.TIMEOUT, update.NETWORK, update.SERVFAIL} == update.TRANSIENT
    assert set(update.LIKELY_FIX) | update.TRANSIENT | {update.OK, update.OTHER} == set(
        update.RESULTS
    )


ZONE_TEXT = """
$ORIGIN dnssd.example.test.
$TTL 300
@ SOA ns hostmaster 1 3600 600 86400 60
@ NS ns
ns A 127.0.0.1
b._dns-sd._udp 120 PTR iot
b._dns-sd._udp PTR elsewhere.example.
_ipp._tcp.iot 120 PTR living\\032room._ipp._tcp.iot
living\\032room._ipp._tcp.iot 120 SRV 0 0 631 tv.iot
orphan._ipp._tcp.iot 120 TXT "left by hand"
tv.iot 60 A 10.20.0.5
"""


def test_what_the_gateway_owns_in_a_transferred_zone_and_the_reconciliation() -> None:
    zone = dns.zone.from_text(ZONE_TEXT, relativize=False)
    held, stale = update.owned(zone, ZONE, ["iot", "trusted"], 120)
    texts = {(r.group, r.owner.to_text(), r.rdata.to_text()) for r in held.values()}
    assert texts == {
        (APEX, "b._dns-sd._udp.dnssd.example.test.", "iot.dnssd.example.test."),
        (
            "iot",
            "_ipp._tcp.iot.dnssd.example.test.",
            "living\\032room._ipp._tcp.iot.dnssd.example.test.",
        ),
        (
            "iot",
            "living\\032room._ipp._tcp.iot.dnssd.example.test.",
            "0 0 631 tv.iot.dnssd.example.test.",
        ),
        ("iot", "orphan._ipp._tcp.iot.dnssd.example.test.", '"left by hand"'),
        ("iot", "tv.iot.dnssd.example.test.", "10.20.0.5"),
    }  # the SOA, NS, ns's A and the foreign browse PTR are not the gateway's
    tv = rec("tv.iot.dnssd.example.test.", dns.rdatatype.A, "10.20.0.5")
    assert stale == {tv.key}  # TTL 60, not 120
    desired = [
        rec(
            "_ipp._tcp.iot.dnssd.example.test.",
            PTR,
            "Living\\032Room._ipp._tcp.iot.dnssd.example.test.",
        ),
        rec(INST, SRV, "0 0 631 tv.iot.dnssd.example.test."),
        tv,
        rec(INST, dns.rdatatype.TXT, '"rp=x"'),
        rec("b._dns-sd._udp.dnssd.example.test.", PTR, "iot.dnssd.example.test.", APEX),
    ]
    adds, deletes = update.reconcile({r.key: r for r in desired}, held, stale)
    assert sorted(c.rec.rdata.to_text() for c in adds) == ['"rp=x"', "10.20.0.5"]
    assert [c.rec.owner.labels[0] for c in deletes] == [b"orphan"]


def test_axfr_query_is_signed() -> None:
    q = update.axfr_query(ZONE, KEY)
    got = dns.message.from_wire(q.to_wire(), keyring=KEY.keyring())
    assert got.had_tsig and got.question[0].rdtype == dns.rdatatype.AXFR


def test_dnspython_tsig_tables_answer_for_the_seeded_name_hash() -> None:
    """bridge.mdns.wire re-seeds Name hashing after dnspython built its TSIG tables; they are
    rebuilt, or every signature raises KeyError (found when the first UPDATE was signed)."""
    for algorithm in ALGORITHMS.values():
        assert algorithm in dns.tsig.mac_sizes
        assert algorithm in dns.tsig.HMACTSig._hashes
