"""Fuzzing the DNS pipeline (issue 12.8): any bytes, any view, either transport, and every
answer is None (dropped) or a response to the query's ID; nothing raises, nothing grows
without bound. ``make test`` runs a fixed budget; ``make fuzz`` (DNS_FUZZ_EXAMPLES) a longer one."""

from __future__ import annotations

import os
import struct

import dns.message
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import const
from bridge.dnsfront.answer import NO_VIEW, Pending
from bridge.dnsfront.cache import ENTRY_OVERHEAD
from tests.support.pipeline import T0, Pipeline

EXAMPLES = int(os.environ.get("DNS_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SEEDS = [
    dns.message.make_query(name, rdtype, use_edns=edns).to_wire()
    for name, rdtype, edns in [
        ("office.local.", "A", -1),
        ("_ipp._tcp.local.", "PTR", 0),
        ("office.trusted.home.arpa.", "AAAA", 0),
        ("b._dns-sd._udp.home.arpa.", "PTR", -1),
        ("5.0.10.10.in-addr.arpa.", "PTR", 0),
        ("example.com.", "NS", 0),
    ]
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real query with bytes flipped, cut, inserted or its counts and flags rewritten."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "header", "opt"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif op == "cut" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(max_size=40))
        elif op == "header" and len(data) >= 12:
            data[2:12] = draw(st.binary(min_size=10, max_size=10))
        elif op == "opt":
            options = draw(st.binary(max_size=30))
            data += b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00" + struct.pack("!H", len(options))
            data += options
    return bytes(data)


QUERIES = st.one_of(st.binary(max_size=300), mutated())


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline()


def _check(p: Pipeline, data: bytes, view: str, tcp: bool) -> None:
    out = p.ask(data, view=view, tcp=tcp, now=T0 + 1)
    if isinstance(out, Pending):
        out = p.answers.complete(out, False, T0 + 2)
    if out is None:
        return
    assert isinstance(out, bytes) and len(out) >= 12
    assert out[:2] == data[:2] and out[2] & 0x80  # a response, to this query
    if not tcp:
        assert len(out) <= const.DNS_MAX_UDP_PAYLOAD


@FUZZ
@given(QUERIES, st.sampled_from(["trusted", "iot", "*", NO_VIEW]), st.booleans())
def test_any_bytes_get_a_response_or_nothing(
    pipeline: Pipeline, data: bytes, view: str, tcp: bool
) -> None:
    _check(pipeline, data, view, tcp)


def test_the_fuzzed_queries_leave_the_caches_bounded(pipeline: Pipeline) -> None:
    budget = pipeline.answers.budget
    assert budget.bytes <= budget.limit == const.DNS_ANSWER_CACHE_BYTES
    held = 0
    for caches in (pipeline.answers.caches(False), pipeline.answers.caches(True)):
        for cache in caches.values():
            held += cache.bytes
            assert len(cache.entries) <= cache.bytes // ENTRY_OVERHEAD
    assert held == budget.bytes
