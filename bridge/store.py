"""The record store: every mDNS record we learned, per VLAN, bounded and TTL-driven.

Records are keyed by (VLAN, owner name, type); names are dnspython Names, whose hash and
equality ignore ASCII case as DNS does. Time is passed in (``now``) so tests move it.

Changes of content (a record appearing or going, not a TTL refresh) reach consumers through
one channel, in two forms: a generation count per VLAN that readers compare when they next
read (the DNS front end drops its pre-rendered answers of a VLAN whose count moved), and
``subscribe``: a call per changed record (the browser follows new services, on-demand
lookups wake). The composition root (bridge/app.py) makes the subscriptions.

Bounded: at ``max_records`` a VLAN's new record evicts the oldest record of the VLAN holding
the most, unless its own VLAN holds its fair share already; then it is refused and counted
(``refused``), so one VLAN's flood of new names cannot flush what the others hold. A device
updating a record it holds (cache-flush) is never refused: its VLAN's oldest record goes.
Within a VLAN at its share, a source address below its own share (the VLAN's over the sources
holding its records) evicts the oldest record of the VLAN's largest source: one host's flood
cannot hide the other devices of its VLAN.

Ownership (the record guard's part here, README "Security"): a record received from a source
address is owned by it. A goodbye from another address is refused; so is any record of another
address for a unique (cache-flush) RRset whose owner's record is still alive (a flush, a
replacement, an addition): counted in ``refused_records`` by (VLAN, reason). A device that
changes its address is accepted at its new one once its old record expires.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from random import random as _random
from typing import TypeVar

import dns.name
import dns.rdata
import dns.rdatatype

from . import const
from .logutil import RateLimitedLog
from .mdns import wire

log = logging.getLogger(__name__)
_limited = RateLimitedLog(log)

RRKey = tuple[str, dns.name.Name, int]  # (vlan, owner, rdtype)
Pin = tuple[str, dns.name.Name, int, dns.rdata.Rdata]  # one of our own records: (vlan, ...)
_FOREVER = float("inf")  # expiry of pinned records
# (vlan, owner, rdtype, rdata, added): one record appeared (True) or went (False)
ChangeListener = Callable[[str, dns.name.Name, int, dns.rdata.Rdata, bool], None]

_PTR = dns.rdatatype.PTR
_SRV = dns.rdatatype.SRV
_MAX_TTL = const.STORE_MAX_TTL
_MAX_RRSET = const.STORE_MAX_RRSET
_MAX_PTR_RRSET = const.STORE_MAX_PTR_RRSET
_FIRST_REFRESH = const.MDNS_REFRESH_FRACTIONS[0]
_LARGEST_SCAN = const.STORE_SOURCE_SCAN
_SCHEDULE_SLACK = const.STORE_SCHEDULE_SLACK
_SCHEDULE_STALE = const.STORE_SCHEDULE_STALE
# the record guard's reason counted here (ingest counts its own)
NOT_OWNER = "not_owner"  # a goodbye, flush or change of another address's record
_JITTER = const.MDNS_REFRESH_JITTER
# why a record went (Store.removing, while its listeners are told)
GOODBYE, EXPIRED, EVICTED, WITHDRAWN = "goodbye", "expired", "evicted", "withdrawn"


class _Link:
    """A place in a VLAN's age order (``_Ages``): its neighbours, older and newer."""

    __slots__ = ("newer", "older")

    newer: _Link | None
    older: _Link | None


class Entry(_Link):
    """One cached rdata; mutable so a TTL refresh is an in-place update.

    It knows its key, rdata and digest, so the schedules, the age order and its RRset hold
    the entry itself rather than tuples and dicts per record: at 40,000 records that is ~15 MB
    less than (when, seq, key, rdata[, received, step]) tuples, (key, rdata) keys and a dict
    per RRset. It is its own place in the age order (``_Link``) and in its RRset, a chain
    from the first entry through ``sibling`` (see ``Store._rrsets``).
    """

    __slots__ = (
        "co_owner",
        "digest",
        "expiry",
        "key",
        "owner",
        "rdata",
        "received",
        "refresh_at",
        "sibling",
        "step",
        "ttl",
        "unique",
    )

    def __init__(
        self,
        key: RRKey,
        rdata: dns.rdata.Rdata,
        digest: bytes,
        expiry: float,
        received: float,
        ttl: int,
    ) -> None:
        self.key = key
        self.rdata = rdata
        self.digest = digest
        self.expiry = expiry
        self.received = received
        self.ttl = ttl
        self.refresh_at = _FOREVER  # the refresh point it is scheduled at
        self.step = 0  # index into const.MDNS_REFRESH_FRACTIONS of that point
        self.owner: str | None = None  # the source address that announced it (None: ours)
        # the same device's address of the other family: it sent this very record too
        self.co_owner: str | None = None
        self.unique = False  # announced with cache-flush: nobody else may change its RRset
        self.older = self.newer = None  # not in an age order (yet, or pinned: never)
        self.sibling: Entry | None = None  # the next record of its RRset

    def __str__(self) -> str:
        """For the debug log: name, type, rdata and TTL, as a zone file has them."""
        rdtype = dns.rdatatype.to_text(self.key[2])  # type: ignore[arg-type]
        return f"{self.key[1]} {self.ttl} {rdtype} {self.rdata}"


class _Ages(_Link):
    """One VLAN's records oldest first (the eviction order): a ring through the entries' own
    ``older``/``newer`` with this object as its head, so moving a refreshed record to the end
    or dropping one is O(1) with nothing allocated per record. An OrderedDict per VLAN was
    3.7 MB at 10,000 services (41,090 records, ~90 B each; tracemalloc, loadtest.memprofile);
    two more slots per Entry are 16 B. Iterating while the ring changes is not supported."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.older = self.newer = self  # empty: the head is its own neighbour both ways
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Entry]:
        link = self.newer
        while link is not self:
            yield link  # type: ignore[misc]
            link = link.newer  # type: ignore[union-attr]

    def oldest(self) -> Entry:
        return self.newer  # type: ignore[return-value]

    def append(self, entry: Entry) -> None:
        """``entry`` (in no age order) becomes the newest."""
        newest = self.older
        entry.older, entry.newer = newest, self
        newest.newer = self.older = entry  # type: ignore[union-attr]
        self.count += 1

    def remove(self, entry: Entry) -> bool:
        """Take ``entry`` out; False if it was in no age order (pinned)."""
        older, newer = entry.older, entry.newer
        if older is None:
            return False
        older.newer, newer.older = newer, older  # type: ignore[union-attr]
        entry.older = entry.newer = None
        self.count -= 1
        return True

    def move_to_end(self, entry: Entry) -> None:
        """``entry`` (in this order) becomes the newest."""
        if self.older is not entry:
            older, newer = entry.older, entry.newer
            older.newer, newer.older = newer, older  # type: ignore[union-attr]
            newest = self.older
            entry.older, entry.newer = newest, self
            newest.newer = self.older = entry  # type: ignore[union-attr]


class _Bucket(list):
    """One second's entries of a ``Schedule``, a plain list with how many of them are live.

    A list, not a dict used as an ordered set: a dict entry was ~41 B a record and schedule
    (3.24 MB for both at 10,000 services, 41,090 records; tracemalloc, loadtest.memprofile), a
    list slot is 8. The price: dropping an entry cannot find it in the list, so it stays
    there, stale, until its second comes or the list is rebuilt (``Schedule.discard``)."""

    __slots__ = ("live",)

    def __init__(self) -> None:
        super().__init__()
        self.live = 0  # entries whose time is in this second (the rest are stale copies)


class Schedule:
    """Entries by the second their time comes (expiry, or the next refresh point).

    Moving or dropping an entry is O(1) (amortised) and keeps at most a few stale references
    per live one (STORE_SCHEDULE_STALE). A heap of (when, entry) cannot drop an item, so evicted and
    rescheduled entries stayed in it until their old time came: in a flood of new services
    (the store full, one eviction per record) that held ~600,000 tuples and the evicted
    records behind them, for the garbage collector to walk over and over (a third of the CPU
    per reflected packet).

    An entry's time is read from it (``expiry`` when ``expiry`` is true, else
    ``refresh_at``), and the entry's time is what says where it is: a bucket's entry whose time
    is no longer in the bucket's second is a stale copy, skipped and dropped. So callers change
    an entry's time first, then tell the schedule (``move``, ``discard``); an entry taken out
    by ``pop_due`` has its time set to infinity (pinned records', never scheduled), and the
    store does the same to a record it drops.
    """

    __slots__ = ("_buckets", "_expiry", "_seconds")

    def __init__(self, expiry: bool) -> None:
        self._expiry = expiry  # which time of its entries it schedules
        self._buckets: dict[int, _Bucket] = {}  # second -> its entries
        self._seconds: list[int] = []  # heap of the buckets' seconds

    def __len__(self) -> int:
        return sum(bucket.live for bucket in self._buckets.values())

    def add(self, when: float, entry: Entry) -> None:
        """``entry``, in no bucket (or a stale copy only), now has time ``when``."""
        if when == _FOREVER:
            return
        second = int(when)
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = _Bucket()
            heapq.heappush(self._seconds, second)
        bucket.append(entry)
        bucket.live += 1

    def move(self, old: float, new: float, entry: Entry) -> None:
        """``entry``'s time went from ``old`` to ``new`` (set already): ``discard`` then
        ``add``, written out (the refresh of a record held, the reflector's most common step,
        moves it in both schedules: two calls, not four; callgrind, pure build, 24,000
        refreshes: ~6,000 instructions a refresh less than with the calls nested)."""
        buckets = self._buckets
        to = None if new == _FOREVER else int(new)
        if old != _FOREVER:
            second = int(old)
            if second == to:
                return  # the same second: it is where it should be
            bucket = buckets.get(second)
            if bucket is not None:
                live = bucket.live = bucket.live - 1
                if not live:
                    bucket.clear()
                # looked at every 8th drop only: len() and the sums are a tenth of a move
                elif not live & 7 and len(bucket) > _SCHEDULE_STALE * live + _SCHEDULE_SLACK:
                    self._compact(second, bucket)
        if to is None:
            return
        second = to
        bucket = buckets.get(second)
        if bucket is None:
            bucket = buckets[second] = _Bucket()
            heapq.heappush(self._seconds, second)
        bucket.append(entry)
        bucket.live += 1

    def discard(self, when: float) -> None:
        """An entry's time was ``when`` and is no longer (changed already): its bucket has one
        live entry less. Its copy stays in the list until the list holds more than
        STORE_SCHEDULE_STALE times its live entries (plus STORE_SCHEDULE_SLACK), when it is
        rebuilt without stale copies (amortised O(1) a discard): a flood's evicted records
        are not kept alive beyond that. An emptied bucket frees its list at once: records
        refreshed together (a device announcing again) empty their old buckets whole (10,000
        services announced 3 more times, pure build, loadtest.memprofile --again 3: +9.0 MB
        RSS when emptied tables were kept until their second came, +1.6 MB freed)."""
        if when == _FOREVER:
            return
        second = int(when)
        bucket = self._buckets.get(second)
        if bucket is None:
            return
        live = bucket.live = bucket.live - 1
        if not live:
            bucket.clear()
        elif len(bucket) > _SCHEDULE_STALE * live + _SCHEDULE_SLACK:
            self._compact(second, bucket)

    def _compact(self, second: int, bucket: _Bucket) -> None:
        """``bucket`` without its stale copies: its live entries once each, in the order they
        came (a live entry can have a stale copy too, if its time left this second and came
        back)."""
        end = second + 1
        if self._expiry:
            bucket[:] = dict.fromkeys([e for e in bucket if second <= e.expiry < end])
        else:
            bucket[:] = dict.fromkeys([e for e in bucket if second <= e.refresh_at < end])

    def pop_due(self, now: float, limit: int) -> list[Entry]:
        """Up to ``limit`` entries whose time is ``<= now``, taken out of the schedule (their
        time set to infinity), earliest second first."""
        out: list[Entry] = []
        seconds, buckets, expiry = self._seconds, self._buckets, self._expiry
        while seconds and seconds[0] <= now and len(out) < limit:
            second = seconds[0]
            bucket = buckets[second]
            end = second + 1
            kept: list[Entry] = []
            for i, entry in enumerate(bucket):
                if len(out) >= limit:
                    kept.extend(bucket[i:])  # for the next call, unread
                    break
                when = entry.expiry if expiry else entry.refresh_at
                if second <= when < end:  # not a stale copy (nor one taken just now)
                    if when <= now:
                        if expiry:
                            entry.expiry = _FOREVER
                        else:
                            entry.refresh_at = _FOREVER
                        out.append(entry)
                        bucket.live -= 1
                    else:
                        kept.append(entry)
            if not bucket.live or (end <= now and len(out) < limit):  # none left in it
                heapq.heappop(seconds)
                del buckets[second]
            else:
                bucket[:] = kept
                if end > now:  # the current second: the rest is not due yet
                    break
        return out


@dataclass(frozen=True, slots=True)
class Cached:
    """A record as handed to readers: rdata plus what is left of its TTL."""

    vlan: str
    name: dns.name.Name
    rdtype: int
    rdata: dns.rdata.Rdata
    remaining: float
    ttl: int


class Subscription:
    """One consumer of the store's changes (``Store.subscribe``).

    It can be paused: a paused subscription costs the store nothing per record. On-demand
    lookups listen only while a DNS query waits for mDNS, which is rare, while every record
    the gateway learns is a change (a flood of announcements is thousands a second)."""

    __slots__ = ("_listener", "_listeners")

    def __init__(self, listeners: list[ChangeListener], listener: ChangeListener) -> None:
        self._listeners = listeners  # the store's: listeners of active subscriptions
        self._listener = listener

    @property
    def active(self) -> bool:
        return self._listener in self._listeners

    @active.setter
    def active(self, on: bool) -> None:
        if on and self._listener not in self._listeners:
            self._listeners.append(self._listener)
        elif not on and self._listener in self._listeners:
            self._listeners.remove(self._listener)


class Store:
    """Every record learned from mDNS, per VLAN: the one source the DNS answers, the browser's
    follow-ups, the reflector's and the HTTP surface's views read.

    One store rather than one per consumer because they must agree (a DNS answer and the
    record the browser asked for are the same record) and because memory is the router's
    scarcest resource: a record costs ~1 KB whoever reads it. It holds what RFC 6762 asks of
    a cache (TTLs, goodbyes, cache-flush, refresh points), bounded fairly between VLANs, and
    tells its consumers what changed (see the module docstring) without knowing them."""

    def __init__(self, max_records: int = const.STORE_MAX_RECORDS) -> None:
        self.max_records = max_records
        # RRsets keyed by each rdata's canonical wire form: dnspython hashes and compares
        # Rdata by rendering it on every call (~5-10 us); bytes hash once and compare by memcmp
        # An RRset is its first Entry, the others chained through ``sibling`` in the order they
        # came (bounded by STORE_MAX_RRSET / _PTR_RRSET; most hold one): a one-entry list per
        # RRset was 2.9 MB at 10,000 services (31,093 of ~94 B; tracemalloc,
        # loadtest.memprofile), a slot is 8 B a record; lookups compare the entries' digests.
        self._rrsets: dict[RRKey, Entry] = {}
        # per VLAN, its records oldest first (eviction order); a VLAN holding none has no entry
        self._ages: dict[str, _Ages] = {}
        self._size = 0  # records in them all (pinned records are not counted)
        self._expiries = Schedule(True)  # every non-pinned entry, by expiry
        self._refresh = Schedule(False)  # and by its next RFC 6762 §5.2 refresh point
        # owner names per VLAN (-> the types held there) and, for empty non-terminals, how
        # many names sit below each; a tuple of types is a quarter of a set's size
        self._names: dict[str, dict[dns.name.Name, tuple[int, ...]]] = {}
        self._below: dict[str, dict[dns.name.Name, int]] = {}
        # SRV targets per VLAN: target host -> the owner names of the SRVs pointing at it, as
        # _Owners (one name, a few in a tuple, a set beyond)
        self._srv_targets: dict[str, dict[dns.name.Name, _Owners]] = {}
        # content changes so far, in all (one int for a reader to compare: anything new?) and
        # per VLAN (which?): read before use, never written by readers, so any number of
        # them can keep their own last-seen counts (a dict increment per record here instead
        # of a call per record and reader)
        self.generation = 0
        self.generations: dict[str, int] = {}
        self._listeners: list[ChangeListener] = []  # of the active subscriptions
        self.evicted = 0
        self.expired = 0
        # why the record a listener is told about went: goodbye, expired, evicted, withdrawn
        # (read by the event log during the call; one attribute, nothing per listener)
        self.removing = WITHDRAWN
        self.refused: dict[str, int] = {}  # per VLAN: new records not cached (store full)
        # the record guard's refusals: (VLAN, NOT_OWNER) -> records
        self.refused_records: dict[tuple[str, str], int] = {}
        # per VLAN: source address -> records it owns here (for the per-source share)
        self._by_source: dict[str, dict[str, int]] = {}
        self._variation_second = -1
        self._variation_value = 0.0
        # (expiry, first refresh point, the TTL's one int) per TTL of the records received at
        # ``_times_now``: one pair of floats shared by the records of one packet (see _times)
        self._times_now = -1.0
        self._times_memo: dict[int, tuple[float, float, int]] = {}
        # --log-level debug: what was learned, refreshed, expired or evicted (rate-limited);
        # read once here so that at other levels a record costs one attribute test
        self._debug = log.isEnabledFor(logging.DEBUG)

    # --- writing ---------------------------------------------------------------------

    def __len__(self) -> int:
        return self._size

    def add(
        self,
        vlan: str,
        name: dns.name.Name,
        rdtype: int,
        rdata: dns.rdata.Rdata,
        ttl: int,
        now: float,
        cache_flush: bool = False,
        pinned: bool = False,
        digest: bytes | None = None,
        source: str | None = None,
    ) -> bool:
        """Apply one received record (RFC 6762 §10: TTL 0 is a goodbye; cache-flush bit).
        False when ownership refused it (counted), so that no other consumer acts on it
        either (the reflector does not pass it on); a record the store has no room for is
        not refused by this measure.

        ``pinned`` records are the router's own (published by us, e.g. the NTP service):
        they never expire, are never evicted or refreshed, and received records of the same
        name and type do not flush them; ``remove`` withdraws them. ``source``: the address
        the record came from, its owner (ownership: see the module docstring).
        """
        if ttl > _MAX_TTL:
            ttl = _MAX_TTL
        key = (vlan, name, rdtype)
        if pinned:
            self._pin(key, rdata, ttl, now)
            return True
        if digest is None:
            digest = rdata.to_digestable()
        rrset = self._rrsets.get(key)
        if rrset is not None:  # never empty: an RRset goes with its last record
            if source is not None:
                verdict = self._may_change(rrset, digest, ttl, source, now)
                if verdict is not True:
                    return verdict is None  # None: a copy its owner holds, ignored
            # the usual cache-flush record is its RRset's one rdata again: nothing to flush
            if cache_flush and (rrset.sibling is not None or rrset.digest != digest):
                self._flush_others(rrset, digest, now)
            held = _find(rrset, digest)
            if ttl == 0:
                if held is not None:
                    self._goodbye(held, now)
                return True
            if held is not None:
                if source is not None and source != held.owner:
                    _note_co_owner(held, source)
                self._refreshed(held, now, ttl)
                return True
            key = rrset.key  # one key tuple per RRset, not per record
            members = list(_members(rrset))
            if len(members) >= (_MAX_PTR_RRSET if rdtype == _PTR else _MAX_RRSET):
                self._remove_entry(min(members, key=lambda e: e.received), EVICTED)
                rrset = self._rrsets.get(key)
        elif ttl == 0:
            return True  # a goodbye for a record we do not hold
        if self._size >= self.max_records:
            if not self._make_room(vlan, bool(cache_flush and rrset), source):
                return True  # no room (counted as such): not the guard's refusal
            rrset = self._rrsets.get(key)  # the eviction may have emptied it
        self._insert(key, rrset, rdata, digest, now, ttl, source, cache_flush)
        return True

    # the steps of add, in the order it takes them

    def _flush_others(self, rrset: Entry, digest: bytes, now: float) -> None:
        """RFC 6762 §10.2: a cache-flush record makes the RRset's other rdatas received more
        than a second ago expire in one second."""
        flush_at = now + const.MDNS_CACHE_FLUSH_GRACE
        for entry in _members(rrset):
            if (
                entry.digest != digest
                and entry.received < now - const.MDNS_CACHE_FLUSH_GRACE
                and flush_at < entry.expiry != _FOREVER
            ):
                self._set_expiry(entry, flush_at)

    def _goodbye(self, entry: Entry, now: float) -> None:
        """RFC 6762 §10.1: TTL 0 is a goodbye; the record goes in one second, not at once."""
        if now + const.MDNS_GOODBYE_DELAY < entry.expiry != _FOREVER:
            self._set_expiry(entry, now + const.MDNS_GOODBYE_DELAY)
            entry.ttl = 1

    def _refreshed(self, entry: Entry, now: float, ttl: int) -> None:
        """A record held already was announced again: new TTL, youngest of its VLAN, its
        refresh points start over. Not a change of content: nobody is told."""
        if entry.expiry == _FOREVER:
            return  # somebody else announces our record: the responder handles it
        expiry, when, ttl = self._times(now, ttl)
        old = entry.expiry  # _set_expiry inline: the most common step of all
        entry.expiry = expiry
        self._expiries.move(old, expiry, entry)
        entry.received, entry.ttl = now, ttl
        vlan = entry.key[0]
        self._ages[vlan].move_to_end(entry)
        # _schedule_refresh, step 0, inline (its point from _times)
        old = entry.refresh_at
        entry.refresh_at, entry.step = when, 0
        self._refresh.move(old, when, entry)
        if self._debug:
            _limited.debug(("refreshed", vlan), "VLAN %s: refreshed %s", vlan, entry)

    def _insert(
        self,
        key: RRKey,
        rrset: Entry | None,
        rdata: dns.rdata.Rdata,
        digest: bytes,
        now: float,
        ttl: int,
        source: str | None,
        unique: bool,
    ) -> None:
        """A new record (there is room for it): into its RRset, its VLAN's age order, both
        schedules, the name indexes and its source's count; then the change is told."""
        vlan, name, rdtype = key
        expiry, when, ttl = self._times(now, ttl)
        entry = Entry(key, rdata, digest, expiry, now, ttl)
        if rrset is None:
            self._rrsets[key] = entry
            self._name_added(vlan, name, rdtype)
        else:
            _last(rrset).sibling = entry
        if source is not None:
            entry.owner, entry.unique = source, unique
            sources = self._by_source.get(vlan)
            if sources is None:
                sources = self._by_source[vlan] = {}
            sources[source] = sources.get(source, 0) + 1
        order = self._ages.get(vlan)
        if order is None:
            order = self._ages[vlan] = _Ages()
        order.append(entry)
        self._size += 1
        self._expiries.add(expiry, entry)
        entry.refresh_at = when  # _schedule_refresh, step 0, inline (its point from _times)
        self._refresh.add(when, entry)
        if rdtype == _SRV:
            _owner_added(self._srv_targets, vlan, rdata.target, name)  # type: ignore[attr-defined]
        self._notify(vlan, name, rdtype, rdata, True)
        if self._debug:
            _limited.debug(("learned", vlan), "VLAN %s: learned %s", vlan, entry)

    def subscribe(self, listener: ChangeListener, active: bool = True) -> Subscription:
        """Call ``listener`` for every record that appears or goes (not for TTL refreshes),
        while the subscription is active. A listener's exception is logged, never raised."""
        subscription = Subscription(self._listeners, listener)
        subscription.active = active
        return subscription

    def _may_change(
        self, rrset: Entry, digest: bytes, ttl: int, source: str, now: float
    ) -> bool | None:
        """Ownership: may ``source`` send this record (or goodbye) for ``rrset``? A refusal
        (False) is counted; a copy of a unique record its owner holds (the same device over its
        other address family, a reflector's echo) is ignored without being counted (None)."""
        same = _find(rrset, digest)
        owner: str | None
        if ttl == 0:
            if same is None or same.owner is None or source in (same.owner, same.co_owner):
                return True
            owner = same.owner
        else:
            # the first live unique record of another owner (a unique record has an owner):
            # a loop, not a list of them all, on every record refreshed (callgrind, pure
            # build: the list comprehension's frame was ~1,000 instructions a refresh)
            owner = None
            entry: Entry | None = rrset
            while entry is not None:
                if entry.unique and entry.owner != source and entry.expiry > now:
                    owner = entry.owner
                    break
                entry = entry.sibling
            if owner is None:
                return True
            if same is not None:
                _note_co_owner(same, source)
                return None
        vlan, name, _ = rrset.key
        key = (vlan, NOT_OWNER)
        refused = self.refused_records[key] = self.refused_records.get(key, 0) + 1
        _limited.warning(
            ("refused", NOT_OWNER, vlan),
            "VLAN %s: refused mDNS %s for %s from %s: %s owns it (%d so far)",
            vlan,
            "goodbye" if ttl == 0 else "record",
            name,
            source,
            owner,
            refused,
        )
        return False

    def _make_room(self, vlan: str, updating: bool, source: str | None = None) -> bool:
        """The store is full and ``vlan`` has a new record: evict the oldest record of the VLAN
        holding the most, unless ``vlan`` already holds its fair share (the capacity over the
        VLANs holding records); then the new record is refused. So a flood of new names on
        one VLAN (a misbehaving or hostile device) cannot flush the other VLANs' records,
        and once it has filled its share it costs no more than a lookup per record.

        ``updating``: a cache-flush record of an RRset held already (a device's new address
        or port, RFC 6762 §10.2: its old rdata is about to be flushed) is never refused; at
        its share the VLAN's own oldest record makes room for it."""
        ages = self._ages
        mine = ages.get(vlan)
        held = len(mine) if mine is not None else 0
        share = self.max_records // (len(ages) + (mine is None))
        if held < share:
            victims = max(ages.values(), key=len)
        elif updating and mine:
            victims = mine
        elif mine and source is not None and (victim := self._largest_source(vlan, source)):
            self._remove_entry(victim, why=EVICTED)
            self.evicted += 1
            return True
        else:
            refused = self.refused[vlan] = self.refused.get(vlan, 0) + 1
            _limited.warning(
                ("store full", vlan),
                "record store full (%d records): VLAN %s "
                "holds %d, its share; its new records are not cached until some "
                "expire (%d so far; the last from %s)",
                self._size,
                vlan,
                held,
                refused,
                source or "us",
            )
            return False
        victim = victims.oldest()
        self._remove_entry(victim, why=EVICTED)
        self.evicted += 1
        if self._debug:
            _limited.debug(("evicted",), "store full: evicted %s for VLAN %s", victim, vlan)
        return True

    def _largest_source(self, vlan: str, source: str) -> Entry | None:
        """At its VLAN's share, a source below its own share of it (the VLAN's over the sources
        holding its records) displaces the oldest record of the VLAN's largest source; None
        when ``source`` holds its share already (then it is refused) or none is found soon."""
        sources = self._by_source.get(vlan, {})
        mine = sources.get(source, 0)
        if not sources or mine >= len(self._ages[vlan]) // (len(sources) + (mine == 0)):
            return None
        largest = max(sources, key=sources.__getitem__)
        for entry in itertools.islice(self._ages[vlan], _LARGEST_SCAN):
            if entry.owner == largest:
                return entry
        return None

    def _pin(self, key: RRKey, rdata: dns.rdata.Rdata, ttl: int, now: float) -> None:
        rrset = self._rrsets.get(key)
        digest = rdata.to_digestable()
        previous = None if rrset is None else _find(rrset, digest)
        entry = Entry(key, rdata, digest, _FOREVER, now, ttl)
        if rrset is None:
            self._rrsets[key] = entry
            self._name_added(key[0], key[1], key[2])
        elif previous is not None:  # in its place; pinned records do not count against eviction
            entry.sibling = previous.sibling
            if rrset is previous:
                self._rrsets[key] = entry
            else:
                _before(rrset, previous).sibling = entry
            self._forget_age(key[0], previous)
            self._unschedule(previous)
        else:
            _last(rrset).sibling = entry
        if key[2] == dns.rdatatype.SRV:
            _owner_added(self._srv_targets, key[0], rdata.target, key[1])  # type: ignore[attr-defined]
        if previous is None:
            self._notify(key[0], key[1], key[2], rdata, True)

    def remove(self, vlan: str, name: dns.name.Name, rdtype: int, rdata: dns.rdata.Rdata) -> None:
        """Withdraw a record now (our own, when we stop advertising it)."""
        self._remove((vlan, name, rdtype), rdata)

    def repin(self, old: set[Pin], new: set[Pin], ttl: int, now: float) -> None:
        """A publisher's pinned records go from ``old`` to ``new``: what left is removed, what
        came is pinned, what stayed is not touched (no change seen by readers)."""
        for vlan, name, rdtype, rdata in old - new:
            self._remove((vlan, name, rdtype), rdata)
        for vlan, name, rdtype, rdata in new - old:
            self.add(vlan, name, rdtype, rdata, ttl, now, pinned=True)

    def sweep(self, now: float, limit: int = const.STORE_SWEEP_MAX) -> int:
        """Drop records whose time has come, at most ``limit`` (the rest go in the next
        sweep: a mass expiry must not stall the event loop); returns how many went."""
        due = self._expiries.pop_due(now, limit)
        for entry in due:  # a goodbye left the record a TTL of 1 (see _goodbye)
            self._remove_entry(entry, why=GOODBYE if entry.ttl == 1 else EXPIRED)
        self.expired += len(due)
        if self._debug and due:
            _limited.debug(("expired",), "expired %d record(s), e.g. %s", len(due), due[0])
        return len(due)

    def remove_vlan(self, vlan: str) -> None:
        for key in [k for k in self._rrsets if k[0] == vlan]:
            for entry in list(_members(self._rrsets.get(key))):
                self._remove(key, entry.rdata)

    # --- reading ---------------------------------------------------------------------

    def get(self, vlan: str, name: dns.name.Name, rdtype: int, now: float) -> list[Cached]:
        entry = self._rrsets.get((vlan, name, rdtype))
        if entry is None:
            return []
        # the store's own name, interned, not the reader's: a reader that keeps it (the
        # interests, 20,000 of them) kept a copy of each query's name, ~3 MB (tracemalloc)
        name = entry.key[1]
        found = []
        while entry is not None:
            if entry.expiry > now:
                found.append(Cached(vlan, name, rdtype, entry.rdata, entry.expiry - now, entry.ttl))
            entry = entry.sibling
        return found

    def sources(
        self, vlan: str, name: dns.name.Name, rdtype: int, now: float
    ) -> list[tuple[str | None, str | None]]:
        """(owner, co-owner) of each live record of the RRset: the addresses it was heard
        from (None for ours, or no second family); the browser's family choice reads it."""
        rrset = self._rrsets.get((vlan, name, rdtype))
        return [(e.owner, e.co_owner) for e in _members(rrset) if e.expiry > now]

    def types_at(self, vlan: str, name: dns.name.Name) -> set[int]:
        return set(self._names.get(vlan, {}).get(name, ()))

    def has_name(self, vlan: str, name: dns.name.Name) -> bool:
        return name in self._names.get(vlan, {})

    def has_below(self, vlan: str, name: dns.name.Name) -> bool:
        """True if some cached owner name lies strictly below ``name`` (empty non-terminal)."""
        return name in self._below.get(vlan, {})

    def srv_owners_of(self, vlan: str, target: dns.name.Name) -> set[dns.name.Name]:
        """The owner names of the SRV records pointing at ``target`` (a copy)."""
        owners = self._srv_targets.get(vlan, {}).get(target)
        if owners is None:
            return set()
        if isinstance(owners, dns.name.Name):
            return {owners}
        return set(owners)

    def vlans(self) -> set[str]:
        return {k[0] for k in self._rrsets}

    def names(self, vlan: str) -> list[dns.name.Name]:
        """The owner names ``vlan`` holds records for (a copy: readers may outlive changes)."""
        return list(self._names.get(vlan, ()))

    def top_sources(self, vlan: str, n: int) -> list[tuple[str, int]]:
        """The ``n`` source addresses holding the most records of ``vlan``, most first."""
        sources = self._by_source.get(vlan, {})
        return heapq.nlargest(n, sources.items(), key=lambda kv: kv[1])

    def items(self, now: float) -> Iterator[Cached]:
        for (vlan, name, rdtype), rrset in list(self._rrsets.items()):
            for entry in _members(rrset):
                if entry.expiry > now:
                    yield Cached(vlan, name, rdtype, entry.rdata, entry.expiry - now, entry.ttl)

    def due_refresh(self, now: float, limit: int = const.MDNS_REFRESH_MAX_PER_TICK) -> set[RRKey]:
        """RRsets with a record at an RFC 6762 §5.2 refresh point (80/85/90/95 % of TTL);
        at most ``limit`` of them, the rest stay due for the next call (one call's work is
        bounded however many records came due together)."""
        due: set[RRKey] = set()
        last = len(const.MDNS_REFRESH_FRACTIONS) - 1
        while len(due) < limit:
            entries = self._refresh.pop_due(now, limit - len(due))
            if not entries:
                break
            for entry in entries:
                if entry.expiry > now:  # expired ones go in the next sweep
                    due.add(entry.key)
                    if entry.step < last:
                        self._schedule_refresh(entry, entry.step + 1)
        return due

    def _variation(self, received: float) -> float:
        """RFC 6762 §5.2's random 2 % of the TTL, drawn once per second of arrival: records
        that arrived together (one announcement, one burst) are still asked for together, in
        one query, while other seconds' records spread out."""
        second = int(received)
        if second != self._variation_second:
            self._variation_second = second
            self._variation_value = _random() * _JITTER
        return self._variation_value

    def _times(self, now: float, ttl: int) -> tuple[float, float, int]:
        """Expiry and first refresh point (RFC 6762 §5.2, 80 % plus the second's variation) of
        a record received at ``now`` with ``ttl``, as shared float objects: a packet's records
        arrive with one ``now`` and a few TTLs, and two new floats per record were 1.9 MB at
        10,000 services (tracemalloc, loadtest.memprofile). The same values as computed per
        record: the memo holds only the current ``now``'s TTLs (bounded, cleared past 64).
        Third, ``ttl`` as one shared int object per value: ints past 256 are objects (28 B),
        and the parser's one per record (4,500 s for most) was 1.1 MB at 10,000 services."""
        memo = self._times_memo
        if now != self._times_now or len(memo) >= 64:
            self._times_now = now
            memo.clear()
        times = memo.get(ttl)
        if times is None:
            times = memo[ttl] = (
                now + ttl,
                now + (_FIRST_REFRESH + self._variation(now)) * ttl,
                _one(_TTLS, ttl),
            )
        return times

    def _schedule_refresh(self, entry: Entry, step: int = 0) -> None:
        """Move ``entry`` to its refresh point ``step``. RFC 6762 §5.2: plus up to 2 % of the
        TTL at random, so that records learned together (a start-up, a burst of
        announcements) are not all asked for in one tick."""
        old = entry.refresh_at
        when = (
            entry.received
            + (const.MDNS_REFRESH_FRACTIONS[step] + self._variation(entry.received)) * entry.ttl
        )
        entry.refresh_at, entry.step = when, step
        self._refresh.move(old, when, entry)

    # --- internals -------------------------------------------------------------------

    def _set_expiry(self, entry: Entry, when: float) -> None:
        old = entry.expiry
        entry.expiry = when
        self._expiries.move(old, when, entry)

    def _remove(self, key: RRKey, rdata: dns.rdata.Rdata) -> None:
        rrset = self._rrsets.get(key)
        if rrset is None:
            return
        entry = next((e for e in _members(rrset) if e.rdata is rdata), None) or _find(
            rrset, rdata.to_digestable()
        )
        if entry is not None:
            self._remove_entry(entry)

    def _remove_entry(self, entry: Entry, why: str = WITHDRAWN) -> None:
        """Drop a record known to be current (evicted, expired, withdrawn)."""
        key = entry.key
        rrset: Entry | None = self._rrsets[key]
        if rrset is entry:
            rrset = entry.sibling
            if rrset is not None:
                self._rrsets[key] = rrset
        else:
            _before(rrset, entry).sibling = entry.sibling  # type: ignore[arg-type]
        entry.sibling = None
        self._forget_age(key[0], entry)
        self._unschedule(entry)
        rdata = entry.rdata
        vlan, name, rdtype = key
        if rdtype == _SRV:
            target = rdata.target  # type: ignore[attr-defined]
            if not [e for e in _members(rrset) if e.rdata.target == target]:  # type: ignore[attr-defined]
                _owner_removed(self._srv_targets.get(vlan, {}), target, name)
        if rrset is None:
            del self._rrsets[key]
            self._name_removed(vlan, name, rdtype)
        self.removing = why
        self._notify(vlan, name, rdtype, rdata, False)
        self.removing = WITHDRAWN

    def _unschedule(self, entry: Entry) -> None:
        """Out of both schedules for good: its times become infinity (what the schedules'
        stale copies of it are told apart by) before the schedules are told."""
        expiry, refresh_at = entry.expiry, entry.refresh_at
        entry.expiry = entry.refresh_at = _FOREVER
        self._expiries.discard(expiry)
        self._refresh.discard(refresh_at)

    def _forget_age(self, vlan: str, entry: Entry) -> None:
        order = self._ages.get(vlan)
        if order is not None and order.remove(entry):
            self._size -= 1
            if not order:
                del self._ages[vlan]
            owner = entry.owner
            if owner is not None:
                sources = self._by_source[vlan]
                left = sources[owner] - 1
                if left:
                    sources[owner] = left
                else:
                    del sources[owner]
                    if not sources:
                        del self._by_source[vlan]

    def _name_added(self, vlan: str, name: dns.name.Name, rdtype: int) -> None:
        names = self._names.setdefault(vlan, {})
        types = names.get(name)
        if types is None:
            types = ()
            below = self._below.setdefault(vlan, {})
            for parent in _ancestors(name):
                below[parent] = below.get(parent, 0) + 1
        if rdtype not in types:
            names[name] = _shared((*types, rdtype))

    def _name_removed(self, vlan: str, name: dns.name.Name, rdtype: int) -> None:
        names = self._names.get(vlan, {})
        types = names.get(name)
        if types is None:
            return
        if rdtype in types:
            i = types.index(rdtype)
            types = _shared(types[:i] + types[i + 1 :])
        if types:
            names[name] = types
            return
        del names[name]
        below = self._below.get(vlan, {})
        for parent in _ancestors(name):
            left = below.get(parent, 0) - 1
            if left > 0:
                below[parent] = left
            else:
                below.pop(parent, None)

    def _notify(
        self, vlan: str, name: dns.name.Name, rdtype: int, rdata: dns.rdata.Rdata, added: bool
    ) -> None:
        self.generation += 1
        generations = self.generations
        generations[vlan] = generations.get(vlan, 0) + 1
        for listener in self._listeners:
            try:
                listener(vlan, name, rdtype, rdata, added)
            except Exception:  # a listener bug must not corrupt the store
                log.exception("store listener failed")


def _note_co_owner(entry: Entry, source: str) -> None:
    """A dual-stack device announces each record over IPv4 and IPv6, from one address of each
    family, and says goodbye over both: its other family's address becomes the record's
    co-owner, whose goodbye is accepted too. Without it, whichever family arrived second had
    its goodbye refused, and a client of that family on another VLAN kept the departed
    service until its TTL ran out (tests/integration/test_reflector_lab.py, goodbye test).
    Only an address of the other family: a second IPv4 (or IPv6) sender of the same record
    stays a stranger whose goodbye is refused, and the first such address keeps the place (a
    stranger copying the record later over the other family does not take it)."""
    owner = entry.owner
    if entry.co_owner is None and owner is not None and (":" in owner) != (":" in source):
        entry.co_owner = source


# the SRV owners of one target: one name, a tuple of up to _OWNERS_TUPLE_MAX, a set beyond; a
# set per target was 1.3 MB at 10,000 services (5,469 targets, ~1.8 owners each: a set is 232
# B, a 2-tuple 72 B, one name nothing; tracemalloc, loadtest.memprofile). The set past a few
# keeps a host with thousands of SRVs (a hostile one) from costing a tuple copy per record.
_Owners = dns.name.Name | tuple[dns.name.Name, ...] | set[dns.name.Name]
_OWNERS_TUPLE_MAX = 8


def _owner_added(
    by_vlan: dict[str, dict[dns.name.Name, _Owners]],
    vlan: str,
    target: dns.name.Name,
    owner: dns.name.Name,
) -> None:
    targets = by_vlan.get(vlan)
    if targets is None:
        targets = by_vlan[vlan] = {}
    owners = targets.get(target)
    if owners is None:
        targets[target] = owner
    elif isinstance(owners, set):
        owners.add(owner)
    elif isinstance(owners, tuple):
        if owner not in owners:
            more = (*owners, owner)
            targets[target] = set(more) if len(more) > _OWNERS_TUPLE_MAX else more
    elif owners != owner:
        targets[target] = (owners, owner)


def _owner_removed(
    targets: dict[dns.name.Name, _Owners], target: dns.name.Name, owner: dns.name.Name
) -> None:
    owners = targets.get(target)
    if owners is None:
        return
    if isinstance(owners, set):
        owners.discard(owner)
        left: _Owners | None = owners if owners else None
    elif isinstance(owners, tuple):
        rest = tuple([o for o in owners if o != owner])
        left = rest if len(rest) > 1 else (rest[0] if rest else None)
    else:
        left = None if owners == owner else owners
    if left is None:
        del targets[target]
    else:
        targets[target] = left


def _members(rrset: Entry | None) -> Iterator[Entry]:
    """The records of an RRset (its first entry, or None for none), in the order they came."""
    while rrset is not None:
        yield rrset
        rrset = rrset.sibling


def _find(rrset: Entry, digest: bytes) -> Entry | None:
    entry: Entry | None = rrset
    while entry is not None:
        if entry.digest == digest:
            return entry
        entry = entry.sibling
    return None


def _last(rrset: Entry) -> Entry:
    while rrset.sibling is not None:
        rrset = rrset.sibling
    return rrset


def _before(rrset: Entry, entry: Entry) -> Entry:
    """The record of ``rrset`` chained to ``entry`` (not its first)."""
    while rrset.sibling is not entry:
        rrset = rrset.sibling  # type: ignore[assignment]
    return rrset


_TYPE_TUPLES: dict[tuple[int, ...], tuple[int, ...]] = {}
_TTLS: dict[int, int] = {}  # one int object per TTL value (see Store._times)
_T = TypeVar("_T")


def _one(table: dict[_T, _T], value: _T) -> _T:
    """The one object of ``table`` equal to ``value`` (it becomes that object when new)."""
    shared = table.get(value)
    if shared is None:
        if len(table) >= 4096:  # odd traffic makes odd values: stop sharing
            return value
        shared = table[value] = value
    return shared


def _shared(types: tuple[int, ...]) -> tuple[int, ...]:
    """One tuple object per combination of types: a name's types are one of a few dozen
    combinations, and a tuple per name was ~3.5 MB at 62,000 names."""
    return _one(_TYPE_TUPLES, types)


_ANCESTORS: dict[tuple[bytes, ...], tuple[dns.name.Name, ...]] = {}  # parent's labels -> ancestors
_ANCESTORS_MAX = const.STORE_ANCESTORS_MEMO_MAX


def _ancestors(name: dns.name.Name) -> tuple[dns.name.Name, ...]:
    """Proper ancestors of ``name`` down to, but not including, the root (interned);
    memoised by parent: every instance of a service type shares them, every host ``local.``."""
    parent = name.labels[1:]
    found = _ANCESTORS.get(parent)
    if found is None:
        labels = parent[:-1]
        found = tuple([wire.intern(labels[i:]) for i in range(len(labels))])
        if len(_ANCESTORS) >= _ANCESTORS_MAX:
            _ANCESTORS.clear()
        _ANCESTORS[parent] = found
    return found
