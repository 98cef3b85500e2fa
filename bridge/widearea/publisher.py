"""The wide-area publisher's asyncio shell: store changes in, signed UPDATEs out.

The store's change listener (``on_change``) only marks service instances dirty: a few dict
operations per record on the mDNS path. One task does the rest, off that path: after
``WIDEAREA_BATCH_DELAY`` it recomputes the dirty instances (``desired.instance_records``,
``WIDEAREA_CHUNK`` per event-loop turn), counts each record's contributions (a host's
addresses serve all its services), and sends what differs from what the server holds, one
group (a VLAN's subdomain, the apex) at a time, rate-limited, over TCP when large.

What the server holds is known from the UPDATEs it accepted and, at start-up (after
``WIDEAREA_FIRST_RECONCILE``, once the browser has heard the network) and every
``reconcile_interval``, from a TSIG zone transfer (received, parsed and compared in a
thread of its own, off the event loop): whatever the gateway owns there and does not
hold is deleted, whatever is missing is added. A failed UPDATE leaves its changes pending:
timeouts, network errors and SERVFAIL are retried with a doubling backoff, configuration
problems (REFUSED, NOTAUTH, BADKEY, BADSIG, BADTIME, an unsigned answer) are logged once with
the likely fix and retried slowly, per group: a subdomain the server's policy does not grant
is held back while the other groups are published; every retry starts with a transfer, so a
server that lost or gained records meanwhile is caught up exactly. Nothing here can stop the
gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import TypeVar

import dns.asyncquery
import dns.name
import dns.query
import dns.rdata
import dns.update
import dns.zone

from .. import const, dnssd
from ..configsections import WideAreaConfig
from ..logutil import RateLimitedLog
from ..policy import PolicyEngine
from ..policy.model import ANY
from ..store import Store
from .desired import AAAA, PTR, SRV, TXT, A, Allowed, Followed, Rec, instance_records
from .update import (
    LIKELY_FIX,
    OK,
    RESULTS,
    TRANSIENT,
    Change,
    axfr_query,
    failure,
    messages,
    outcome,
    owned,
    reconcile,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_limited = RateLimitedLog(log)


def _nothing(vlan: str, stype: str, instance: str) -> bool:
    return False


class WideAreaPublisher:
    """Keeps ``<vlan>.<zone>`` equal to the services the policies publish (module docstring)."""

    def __init__(
        self,
        config: WideAreaConfig,
        vlans: Collection[str],
        store: Store,
        clock: Callable[[], float],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.vlans = tuple(vlans)
        self._vlanset = frozenset(vlans)
        self.store = store
        self.clock = clock
        self.wall = wall
        self.server = f"{config.server[0]}:{config.server[1]}"
        self._allowed: Allowed = _nothing
        self.followed = Followed()
        self._contrib: dict[tuple[str, dns.name.Name], dict[bytes, Rec]] = {}
        self.desired: dict[bytes, Rec] = {}  # what the zone should hold
        self._refs: dict[bytes, int] = {}  # instances contributing each desired record
        self.published: dict[bytes, Rec] = {}  # what the server holds, as far as we know
        self._touched: dict[bytes, Rec] = {}  # records whose desired and held state may differ
        self._dirty: set[tuple[str, dns.name.Name]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_reconcile = 0.0  # set at start
        self._retry_at = 0.0
        # groups whose last UPDATE the server refused (REFUSED, NOTAUTH, BADKEY, ...): the
        # clock time each is tried again; the other groups' changes go on meanwhile
        self.held_back: dict[str, float] = {}
        self._sendable_at = 0.0  # when pending changes outside the held-back groups exist
        self._backoff = const.WIDEAREA_RETRY_MIN
        self._last_send = float("-inf")
        self._failing = False
        # counters (bridge/widearea/metrics.py)
        self.updates = dict.fromkeys(RESULTS, 0)  # UPDATE messages by outcome
        self.transfers = dict.fromkeys(RESULTS, 0)  # zone transfers by outcome
        self.reconciled = {"added": 0, "deleted": 0}  # differences found by transfers
        self.last_success = 0.0  # wall-clock time of the last accepted UPDATE or transfer

    # --- inputs (called on the event loop by the store and the policy) -----------------

    def on_change(
        self, vlan: str, name: dns.name.Name, rdtype: int, rdata: dns.rdata.Rdata, added: bool
    ) -> None:
        """The store's listener: mark the instances a record belongs to (cheap, no I/O)."""
        if vlan not in self._vlanset:
            return
        if rdtype == PTR:
            if dnssd.is_browse_target(name):
                target = rdata.target  # type: ignore[attr-defined]
                if self.followed.ptr(vlan, name, target, added):
                    self._mark(vlan, target)
        elif rdtype in (SRV, TXT):
            if self.followed.holds(vlan, name):
                self._mark(vlan, name)
        elif rdtype in (A, AAAA):
            for instance in self.store.srv_owners_of(vlan, name):
                if self.followed.holds(vlan, instance):
                    self._mark(vlan, instance)

    def set_policy(self, engine: PolicyEngine) -> None:
        """A new policy set: every followed instance is computed again."""
        self._allowed = engine.view(ANY).wide_area_visible
        self._dirty.update(self.followed.all())
        self._wake.set()

    def _mark(self, vlan: str, instance: dns.name.Name) -> None:
        self._dirty.add((vlan, instance))
        self._wake.set()

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._next_reconcile = self.clock() + const.WIDEAREA_FIRST_RECONCILE
        self._task = asyncio.get_running_loop().create_task(self._run(), name="wide-area")
        log.info(
            "wide-area publishing into %s on %s with key %s, TTL %d s, reconciling every %.0f s",
            self.config.zone,
            self.server,
            self.config.key.name,
            self.config.ttl,
            self.config.reconcile_interval,
        )

    async def stop(self) -> None:
        """Stop sending; what the server holds stays (the next start reconciles it)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self._wait_for_work()
                await asyncio.sleep(const.WIDEAREA_BATCH_DELAY)  # the rest of the burst
                await self._compute()
                kind = OK
                if self.clock() >= self._next_reconcile:
                    kind = await self._reconcile()
                if kind == OK and self._touched:
                    kind = await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end publishing (nor the gateway)
                log.exception("wide-area publisher failed; retrying")
                kind = "error"
            self._after(kind)

    def _after(self, kind: str) -> None:
        """Backoff after a failure; the retry starts with a transfer (the truth, caught up)."""
        now = self.clock()
        if kind == OK:
            if self._failing:
                log.info(
                    "wide-area: %s accepts updates for %s again", self.server, self.config.zone
                )
            self._failing = False
            self._backoff = const.WIDEAREA_RETRY_MIN
            return
        self._failing = True
        if kind in TRANSIENT:
            delay = self._backoff
            self._backoff = min(self._backoff * 2, const.WIDEAREA_RETRY_MAX)
        else:
            delay = const.WIDEAREA_CONFIG_RETRY
        self._retry_at = now + delay
        self._next_reconcile = min(self._next_reconcile, self._retry_at)

    async def _wait_for_work(self) -> None:
        while True:
            now = self.clock()
            deadline = self._next_reconcile
            if self._dirty:
                deadline = min(deadline, max(self._retry_at, now))
            if self._touched:
                deadline = min(deadline, max(self._retry_at, self._sendable_at, now))
            if deadline <= now:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), deadline - now)

    # --- the desired set -------------------------------------------------------------------

    async def _compute(self) -> None:
        """Recompute the dirty instances, ``WIDEAREA_CHUNK`` per event-loop turn."""
        dirty, self._dirty = self._dirty, set()
        zone = self.config.zone
        for i, (vlan, instance) in enumerate(dirty):
            if i and i % const.WIDEAREA_CHUNK == 0:
                await asyncio.sleep(0)
            owners = self.followed.owners(vlan, instance)
            recs = (
                instance_records(
                    self.store, vlan, instance, owners, zone, self._allowed, self.clock()
                )
                if owners
                else []
            )
            self._contribute((vlan, instance), recs)

    def _contribute(self, who: tuple[str, dns.name.Name], recs: list[Rec]) -> None:
        old = self._contrib.get(who, {})
        new = {r.key: r for r in recs}
        refs, desired, touched = self._refs, self.desired, self._touched
        for key in old.keys() - new.keys():
            left = refs[key] - 1
            if left:
                refs[key] = left
            else:
                del refs[key]
                touched[key] = desired.pop(key)
        for key in new.keys() - old.keys():
            n = refs.get(key, 0)
            refs[key] = n + 1
            if not n:
                desired[key] = touched[key] = new[key]
        if new:
            self._contrib[who] = new
        else:
            self._contrib.pop(who, None)

    # --- talking to the server -------------------------------------------------------------

    async def _reconcile(self) -> str:
        """Transfer the zone; what the gateway owns there becomes the known state and every
        difference from the desired set is pending. A refused transfer is a configuration
        problem: said once, and incremental updates go on.

        The transfer, its parsing and the comparison run in a thread (``_off_loop``): on the
        event loop, dnspython parsed a transfer of 4,000 records in one turn once they had
        arrived, and ``owned`` walked them in the next, holding the loop 0.22-0.33 s of CPU
        (1,000 services, Knot on loopback, per-callback ``time.thread_time``)."""
        cfg = self.config
        desired = dict(self.desired)  # the thread's own copy (the loop owns the original)
        try:
            held, stale, adds, deletes = await asyncio.wait_for(
                _off_loop(lambda: _transfer(cfg, self.vlans, desired)),
                const.WIDEAREA_AXFR_TIMEOUT,
            )
        except Exception as exc:  # every failure is an outcome, counted and logged
            kind = failure(exc)
            self.transfers[kind] += 1
            self._problem(kind, "zone transfer (AXFR)", exc)
            if kind in TRANSIENT:
                return kind
            self._next_reconcile = self.clock() + const.WIDEAREA_CONFIG_RETRY
            return OK
        self.transfers[OK] += 1
        self.last_success = self.wall()
        self._next_reconcile = self.clock() + cfg.reconcile_interval
        for key in stale:
            if key in self.desired:
                del held[key]  # desired with another TTL: added again with ours
        self.published = held
        for change in (*adds, *deletes):
            self._touched[change.rec.key] = change.rec
        self.reconciled["added"] += len(adds)
        self.reconciled["deleted"] += len(deletes)
        if adds or deletes:
            log.info(
                "wide-area: zone transfer of %s from %s: %d record(s) to add, %d to delete",
                cfg.zone,
                self.server,
                len(adds),
                len(deletes),
            )
        return OK

    async def _flush(self) -> str:
        """Send every pending difference, group by group. A timeout or network error stops
        the flush (what was not applied stays pending, retried with backoff); a group the
        server refuses is held back for ``WIDEAREA_CONFIG_RETRY`` while the others go on:
        the server's policy grants names, so one VLAN's subdomain missing from it (a VLAN
        added to the gateway, not to the ACL) must not stop the rest."""
        groups: dict[str, list[Change]] = {}
        for i, (key, rec) in enumerate(list(self._touched.items())):
            if i and i % const.WIDEAREA_COMPARE_CHUNK == 0:
                await asyncio.sleep(0)
            want = self.desired.get(key)
            have = self.published.get(key)
            if want is not None and have is None:
                groups.setdefault(rec.group, []).append(Change(want, True))
            elif have is not None and want is None:
                groups.setdefault(rec.group, []).append(Change(have, False))
            else:
                del self._touched[key]
        cfg = self.config
        now = self.clock()
        for group in [g for g, t in self.held_back.items() if t <= now and g not in groups]:
            del self.held_back[group]  # its retry is due and nothing of it is pending
        for group in sorted(groups):
            if self.held_back.get(group, 0.0) > now:
                continue
            kind = await self._flush_group(group, groups[group])
            if kind in TRANSIENT:
                return kind
            if kind != OK:
                self.held_back[group] = retry = self.clock() + const.WIDEAREA_CONFIG_RETRY
                self._next_reconcile = min(self._next_reconcile, retry)  # retry from the truth
            elif self.held_back.pop(group, None) is not None:
                log.info(
                    "wide-area: %s accepts updates for %s again", self.server, _where(group, cfg)
                )
        waiting = [self.held_back[g] for g in groups if g in self.held_back]
        self._sendable_at = min(waiting) if waiting else 0.0
        return OK

    async def _flush_group(self, group: str, pending: list[Change]) -> str:
        """One group's changes, message by message; the first failure's kind, else OK."""
        cfg = self.config
        for msg, changes in messages(pending, cfg.zone, cfg.key, cfg.ttl):
            kind = await self._send(msg, group, changes)
            if kind != OK:
                return kind
            for c in changes:
                key = c.rec.key
                if c.add:
                    self.published[key] = c.rec
                else:
                    self.published.pop(key, None)
                self._touched.pop(key, None)
        return OK

    async def _send(self, msg: dns.update.UpdateMessage, group: str, changes: list[Change]) -> str:
        wait = self._last_send + const.WIDEAREA_MIN_INTERVAL - self.clock()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_send = self.clock()
        host, port = self.config.server
        try:
            if len(changes) > const.WIDEAREA_UDP_MAX_RECORDS:
                response = await dns.asyncquery.tcp(
                    msg, host, timeout=const.WIDEAREA_TIMEOUT, port=port
                )
            else:
                response, _ = await dns.asyncquery.udp_with_fallback(
                    msg, host, timeout=const.WIDEAREA_TIMEOUT, port=port
                )
        except Exception as exc:  # every failure is an outcome, counted and logged
            kind = failure(exc)
            self.updates[kind] += 1
            self._problem(kind, f"UPDATE of {_where(group, self.config)}", exc)
            return kind
        kind = outcome(response.rcode())
        self.updates[kind] += 1
        if kind != OK:
            self._problem(kind, f"UPDATE of {_where(group, self.config)}", None)
            return kind
        self.last_success = self.wall()
        adds = sum(c.add for c in changes)
        log.debug(
            "wide-area: UPDATE %s: %d added, %d deleted",
            _where(group, self.config),
            adds,
            len(changes) - adds,
        )
        return OK

    def _problem(self, kind: str, what: str, exc: BaseException | None) -> None:
        cfg = self.config
        detail = f" ({type(exc).__name__}: {exc})" if exc is not None and str(exc) else ""
        if kind in TRANSIENT:
            _limited.warning(
                ("wide-area", kind),
                "wide-area: %s to %s for zone %s failed: %s%s; retrying with backoff",
                what,
                self.server,
                cfg.zone,
                kind,
                detail,
            )
            return
        fix = LIKELY_FIX.get(kind, "the server refused the records; see its log")
        _limited.error(
            ("wide-area", kind, what),  # each refused group is said
            "wide-area: %s to %s for zone %s with key %s: %s%s; likely fix: %s; "
            "retrying every %.0f s",
            what,
            self.server,
            cfg.zone,
            cfg.key.name,
            kind.upper(),
            detail,
            fix,
            const.WIDEAREA_CONFIG_RETRY,
        )


def _where(group: str, cfg: WideAreaConfig) -> str:
    """A group as the logs name it: the VLAN's subdomain, or the zone's apex."""
    return f"{group}.{cfg.zone}" if group else f"{cfg.zone} (apex)"


def _transfer(
    cfg: WideAreaConfig, vlans: Collection[str], desired: Mapping[bytes, Rec]
) -> tuple[dict[bytes, Rec], set[bytes], list[Change], list[Change]]:
    """The zone by TSIG AXFR, what the gateway owns there (and which of it has another TTL),
    and the (additions, deletions) from ``desired`` (run by ``_off_loop``)."""
    zone = dns.zone.Zone(cfg.zone, relativize=False)
    dns.query.inbound_xfr(
        cfg.server[0],
        zone,
        axfr_query(cfg.zone, cfg.key),
        port=cfg.server[1],
        timeout=const.WIDEAREA_TIMEOUT,
        lifetime=const.WIDEAREA_AXFR_TIMEOUT,
    )
    held, stale = owned(zone, cfg.zone, vlans, cfg.ttl)
    adds, deletes = reconcile(desired, held, stale)
    return held, stale, adds, deletes


async def _off_loop(work: Callable[[], _T]) -> _T:
    """``work()`` in a thread of its own; its result (or exception) back on the loop. A daemon
    thread, not ``asyncio.to_thread``: ``asyncio.run`` joins that pool at exit, so a transfer
    from an unresponsive server would hold a stopping gateway for ``WIDEAREA_AXFR_TIMEOUT``;
    cancelled, the thread ends with its socket's timeout and its result is dropped."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[_T] = loop.create_future()

    def settle(result: _T | None, exc: BaseException | None) -> None:
        if done.done():  # cancelled meanwhile
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: _T | None = None
        error: BaseException | None = None
        try:
            result = work()
        except BaseException as exc:  # handed to the loop, raised there
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="wide-area transfer", daemon=True).start()
    return await done
