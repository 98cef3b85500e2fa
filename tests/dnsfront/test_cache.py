"""The pre-rendered answers' byte budget: shared by every cache, least recently used out."""

from __future__ import annotations

import tracemalloc

from bridge import const
from bridge.dnsfront.answer import cached
from bridge.dnsfront.cache import Budget, ResponseCache
from bridge.dnsfront.fastpath import query_key

_COUNTS = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_ANSWER = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x0a\x00\x04\x0a\x00\x00\x01" * 10


def query(i: int, qid: int = 7) -> bytes:
    label = f"n{i:05d}-{'x' * 40}".encode()
    return (
        qid.to_bytes(2, "big")
        + b"\x01\x00"
        + _COUNTS
        + bytes([len(label)])
        + label
        + b"\x07example\x00\x00\x01\x00\x01"
    )


def put(cache: ResponseCache, i: int) -> bytes:
    q = query(i)
    parsed = query_key(q)
    assert parsed is not None
    reply = q[:2] + b"\x85\x00\x00\x01\x00\x0a\x00\x00\x00\x00" + q[12:] + _ANSWER
    cache.put(parsed[0], reply, parsed[1], 100.0)
    return parsed[0]


def test_a_full_cache_drops_its_least_recently_used_never_everything() -> None:
    """100,000 unique names once added 69 MB, and a full cache was cleared whole."""
    budget = Budget(1 << 20)
    cache = ResponseCache(budget)
    keys = []
    for i in range(20_000):
        keys.append(put(cache, i))
        assert budget.bytes <= budget.limit
        assert cache.entries  # never emptied
    real = sum(len(k) + len(e[0]) for k, e in cache.entries.items())
    assert real < cache.bytes == budget.bytes  # the estimate covers the bytes and more
    assert budget.evicted > 0 and len(cache.entries) + budget.evicted == 20_000
    assert keys[-1] in cache.entries and keys[0] not in cache.entries  # the oldest went first
    assert len(cache.entries) > 1_600  # 7/8 of 1 MiB over ~540 estimated bytes an answer


def test_an_answer_asked_again_outlives_those_that_were_not() -> None:
    budget = Budget(1 << 20)
    cache = ResponseCache(budget)
    hot = [put(cache, i) for i in range(50)]
    for i in range(50, 20_000):
        put(cache, i)
        if i % 500 == 0:  # the hot set is asked now and then, the rest never again
            for n in range(50):
                assert cached(cache, query(n, qid=i & 0xFFFF), 1.0) is not None
    assert all(key in cache.entries for key in hot)
    assert query_key(query(60))[0] not in cache.entries  # type: ignore[index]


def test_the_budget_is_one_for_every_view_and_transport() -> None:
    """One cache's flood evicts from the largest caches, not from the small one only."""
    budget = Budget(1 << 20)
    flooded, quiet = ResponseCache(budget), ResponseCache(budget)
    quiet_keys = [put(quiet, i) for i in range(100)]
    for i in range(100, 20_000):
        put(flooded, i)
        assert budget.bytes <= budget.limit
    assert budget.bytes == flooded.bytes + quiet.bytes
    assert all(key in quiet.entries for key in quiet_keys)
    quiet.clear()
    assert budget.bytes == flooded.bytes and not quiet.entries


def test_the_estimate_is_within_a_quarter_of_the_memory_taken() -> None:
    """ENTRY_OVERHEAD is what the entries take, measured: the budget means RSS."""
    budget = Budget(64 << 20)
    cache = ResponseCache(budget)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):
            put(cache, i)
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert budget.evicted == 0
    assert 0.75 * budget.bytes < taken < 1.25 * budget.bytes, (taken, budget.bytes)


def test_the_default_budget() -> None:
    assert Budget().limit == const.DNS_ANSWER_CACHE_BYTES
