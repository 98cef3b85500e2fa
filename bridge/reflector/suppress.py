"""Storm control: duplicate suppression (recent marks per packet, question and record) and
rate limits (token buckets per VLAN and direction).

Each packet, question and record is sent into a VLAN at most once per
``const.REFLECT_DUP_WINDOW`` (also when it arrived there first); the marks are bounded by
``const.REFLECT_MARKS_MAX`` per generation.
"""

from __future__ import annotations

from typing import Any

from ..mdns import wire


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; ``take(now)`` spends one if there is one."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp: float | None = None

    def take(self, now: float) -> bool:
        if self.stamp is not None and now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now if self.stamp is None else max(self.stamp, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Marks:
    """Recent (key -> value) marks in two generations: O(1), bounded, self-expiring.

    An entry lives at least ``window`` seconds unless ``cap`` entries arrive sooner (then the
    oldest generation is dropped early: memory wins over perfect suppression under a flood).
    """

    __slots__ = ("cap", "cur", "prev", "start", "window")

    def __init__(self, window: float, cap: int) -> None:
        self.window = window
        self.cap = cap
        self.cur: dict[object, Any] = {}
        self.prev: dict[object, Any] = {}
        self.start = float("-inf")

    def rotate(self, now: float) -> None:
        if now - self.start >= self.window or len(self.cur) >= self.cap:
            self.prev = self.cur
            self.cur = {}
            self.start = now

    def get(self, key: object) -> tuple[float, int] | None:
        v = self.cur.get(key)
        return v if v is not None else self.prev.get(key)

    def slots(self, key: object, n: int) -> list[Any]:
        """A record's marks on each of ``n`` VLANs (``None`` or ``(time, flags)``), held in
        the current generation and updated in place: one lookup per record, not per VLAN."""
        cur = self.cur
        marks = cur.get(key)
        if marks is None:
            old = self.prev.get(key)
            marks = cur[key] = [None] * n if old is None else list(old)
        return marks

    def __len__(self) -> int:
        return len(self.cur) + len(self.prev)


# Mark flags: bit 0 the record was a goodbye (TTL 0); bit 1 we sent it (else: it arrived).
GOODBYE = 1
OURS = 2


def record_key(rec: wire.Record, family: int) -> object:
    """A record's identity per address family (hosts listening on one family only must get
    each record on it): names hash once (interned, case-insensitive) and the rdata's
    canonical form is the digest the parser already made (dnspython's hash re-encodes)."""
    digest = rec.digest if rec.digest is not None else rec.rdata.to_digestable()
    return (rec.name, rec.rdtype, rec.rdclass, digest, family)


def question_key(q: wire.Question) -> object:
    """A question's identity (``b"?"`` keeps it apart from every record key)."""
    return (b"?", q.name, q.rdtype, q.rdclass)
