"""Building reply messages with dnspython: the slow path, and the source of pre-rendered answers.

Every reply echoes the question (CoreDNS turns a reply without it into FORMERR), carries our
OPT only when the query had one (UDP size echoed, DO echoed, no options), and fits the
client's limit: additionals are dropped first, then TC=1 with an empty answer.
"""

from __future__ import annotations

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.rcode

from .. import const
from .resolver import Answer


def udp_limit(query: dns.message.Message) -> int:
    if query.edns < 0:
        return const.DNS_PLAIN_UDP_LIMIT
    return max(const.DNS_PLAIN_UDP_LIMIT, min(query.payload, const.DNS_MAX_UDP_PAYLOAD))


def skeleton(
    query: dns.message.Message, rcode: int = dns.rcode.NOERROR, authoritative: bool = False
) -> dns.message.Message:
    reply = dns.message.Message(id=query.id)
    reply.flags = dns.flags.QR | (query.flags & (dns.flags.RD | dns.flags.CD))
    if authoritative:
        reply.flags |= dns.flags.AA
    reply.set_opcode(query.opcode())
    reply.question = list(query.question)
    if query.edns >= 0:
        payload = max(const.DNS_PLAIN_UDP_LIMIT, min(query.payload, const.DNS_MAX_UDP_PAYLOAD))
        reply.use_edns(0, query.ednsflags & dns.flags.DO, payload, pad=0)
    reply.set_rcode(dns.rcode.Rcode.make(rcode))
    return reply


def render(query: dns.message.Message, answer: Answer, limit: int) -> bytes:
    reply = skeleton(query, answer.rcode, answer.authoritative)
    reply.answer = answer.answer
    reply.authority = answer.authority
    reply.additional = answer.additional
    try:
        return reply.to_wire(max_size=limit)
    except dns.exception.TooBig:
        pass  # too big: without the additional section (extra data: no TC for it, RFC 2181 §9)
    reply.additional = []
    try:
        return reply.to_wire(max_size=limit)
    except dns.exception.TooBig:
        pass  # still too big: an empty reply with TC=1, and the client asks again over TCP
    reply.answer, reply.authority = [], []
    reply.flags |= dns.flags.TC
    return reply.to_wire(max_size=limit)


def error(query: dns.message.Message, rcode: int) -> bytes:
    return skeleton(query, rcode).to_wire(max_size=const.DNS_MAX_TCP_MESSAGE)


def formerr_header(data: bytes, rcode: int = dns.rcode.FORMERR) -> bytes | None:
    """An error for a query we cannot (or will not) parse: header only, ID and opcode kept,
    no question (FORMERR by default; NOTIMP for an opcode we do not serve)."""
    if len(data) < 12 or data[2] & 0x80:
        return None  # too short to answer, or a response: answering could start a loop
    flags = 0x80 | (data[2] & 0x79)
    return data[:2] + bytes([flags, rcode]) + b"\x00" * 8
