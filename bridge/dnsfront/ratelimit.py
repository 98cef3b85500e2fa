"""Response rate limiting (RRL, as BIND and Knot do it): UDP answers per second per client prefix.

A DNS answer over UDP can be sent to a forged source address, so a flood of queries becomes a
flood of answers at a victim; and one client asking as fast as it can takes the event loop from
everyone else. Each client prefix (/24, /56) earns ``rate`` responses a second and may save up
one second's worth; over it, responses are dropped, and every ``slip``-th of those is sent as
an empty TC=1 reply instead (a real client retries over TCP, a victim gets a small packet).
A prefix may owe at most ``rate x window`` responses, so it is limited for at most ``window``
seconds after its flood stops. Pure: a prefix, the time and the reply in; what to send out.
Only listeners beyond loopback use it (not the view listeners CoreDNS forwards to, where every
client shares CoreDNS's address).
"""

from __future__ import annotations

import ipaddress

from .. import const
from .fastpath import query_key

_V6_PREFIX_BYTES = const.DNS_RRL_IPV6_PREFIX // 8
_V4_MASK = (0xFFFFFFFF << (32 - const.DNS_RRL_IPV4_PREFIX)) & 0xFFFFFFFF


def client_prefix(host: str) -> bytes | str:
    """The prefix ``host`` is counted under: its first DNS_RRL_IPV4_PREFIX or
    DNS_RRL_IPV6_PREFIX bits (the address itself when it does not parse)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if ip.version == 4:
        return (int(ip) & _V4_MASK).to_bytes(4, "big")
    return ip.packed[:_V6_PREFIX_BYTES]


def truncated(query: bytes) -> bytes | None:
    """An empty TC=1 reply to ``query`` (header and question, no OPT), or None when the query
    has no shape we can echo."""
    parsed = query_key(query)
    if parsed is None:
        return None
    qend = parsed[1]
    flags = 0x80 | (query[2] & 0x79) | 0x02  # QR, opcode and RD kept, TC
    return query[:2] + bytes((flags, 0)) + b"\x00\x01\x00\x00\x00\x00\x00\x00" + query[12:qend]


class ResponseRateLimiter:
    """The RRL accounts of the client prefixes seen lately, in a bounded table."""

    __slots__ = (
        "_accounts",
        "_floor",
        "_prefixes",
        "dropped",
        "max_prefixes",
        "rate",
        "slip",
        "slipped",
    )

    def __init__(
        self,
        rate: float = const.DNS_RRL_RATE,
        window: float = const.DNS_RRL_WINDOW,
        slip: int = const.DNS_RRL_SLIP,
        max_prefixes: int = const.DNS_RRL_TABLE_MAX,
    ) -> None:
        self.rate = float(rate)
        self.slip = slip
        self.max_prefixes = max_prefixes
        self._floor = -self.rate * window
        # prefix -> [balance, time of its last response, limited responses so far]; oldest first
        self._accounts: dict[bytes | str, list[float]] = {}
        self._prefixes: dict[str, bytes | str] = {}  # client address -> its prefix (memo)
        self.dropped = 0  # limited responses not sent (counted, exported)
        self.slipped = 0  # limited responses sent as an empty TC=1 reply instead

    def admit(self, host: str, query: bytes, reply: bytes, now: float) -> bytes | None:
        """What to send ``host`` for ``reply``: the reply, an empty TC=1 one, or None."""
        prefix = self._prefixes.get(host)
        if prefix is None:
            if len(self._prefixes) >= self.max_prefixes:
                self._prefixes.clear()
            prefix = self._prefixes[host] = client_prefix(host)
        accounts = self._accounts
        account = accounts.get(prefix)
        if account is None:
            if len(accounts) >= self.max_prefixes:
                del accounts[next(iter(accounts))]
            accounts[prefix] = [self.rate - 1.0, now, 0.0]
            return reply
        balance = min(self.rate, account[0] + (now - account[1]) * self.rate) - 1.0
        account[0] = max(balance, self._floor)
        account[1] = now
        if balance >= 0.0:
            return reply
        account[2] += 1.0
        if self.slip and account[2] % self.slip == 0:
            tc = truncated(query)
            if tc is not None:
                self.slipped += 1
                return tc
        self.dropped += 1
        return None
