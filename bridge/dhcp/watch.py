"""The asyncio shell: polls the lease files, hands the lease host names on.

Every :data:`~bridge.const.DHCP_POLL_INTERVAL` seconds each file's (inode, size, mtime) is
compared with the last read; a changed file is read again in a worker thread (a Kea memfile
grows to megabytes between cleanups), at most :data:`~bridge.const.DHCP_MAX_FILE_BYTES`. That
covers how the servers write: dnsmasq rewrites in place (size or mtime change), Kea appends
(size) and its cleanup renames a new file over the old (inode). A file whose stat changed while
it was read is read again at the next poll. Expiry needs no change of the file: each poll drops
leases whose end has passed, on the wall clock the servers write their times in.

A file that cannot be read (missing, unreadable, too large) keeps its last leases and is logged
once per kind of problem until it reads again; its lines that cannot be parsed are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import dns.name

from .. import const
from ..announce.records import LeaseHost
from ..configsections import LeaseFile
from .hostnames import Ignored, Owners, VlanOf, lease_hosts
from .leases import Lease, parse

log = logging.getLogger(__name__)

_Stat = tuple[int, int, int]  # inode, size, mtime (ns)


class _File:
    __slots__ = ("error", "fmt", "leases", "malformed", "path", "stat")

    def __init__(self, fmt: str, path: Path) -> None:
        self.fmt = fmt
        self.path = path
        self.stat: _Stat | None = None  # of the last good read
        self.leases: tuple[Lease, ...] = ()
        self.malformed = 0  # lines that could not be read, over every read
        self.error = ""  # the last problem logged ("" once it reads again)


class LeaseWatcher:
    """Watches the lease files; ``on_hosts`` gets the lease host names after every poll."""

    def __init__(
        self,
        files: Sequence[LeaseFile],
        vlan_of: VlanOf,
        domains: Mapping[str, dns.name.Name],
        on_hosts: Callable[[list[LeaseHost]], None],
        *,
        reserved: Sequence[str] = (),
        wall_clock: Callable[[], float] = time.time,
        interval: float = const.DHCP_POLL_INTERVAL,
    ) -> None:
        self.files = [_File(f.format, f.path) for f in files]
        self.vlan_of = vlan_of
        self.domains = domains
        self.on_hosts = on_hosts
        self.reserved = tuple(reserved)
        self.wall_clock = wall_clock
        self.interval = interval
        self.hosts: list[LeaseHost] = []
        self.ignored: Counter[str] = Counter()  # reason -> leases whose name was refused
        self.reads = 0
        self.read_errors: Counter[str] = Counter()  # path -> failed reads (logged once a burst)
        self._owners: Owners = {}
        self._seen_ignored: set[Ignored] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lease-watcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # the watcher must outlive a surprise; the next poll retries
                log.exception("lease watcher: poll failed")
            await asyncio.sleep(self.interval)

    async def poll(self) -> None:
        """Read what changed (off the loop), then publish the names of the active leases."""
        for f in self.files:
            stat = _stat(f.path)
            if stat is not None and stat == f.stat:
                continue
            result = await asyncio.to_thread(_read, f.fmt, f.path)
            if result is not None:  # None: written while read; read again at the next poll
                self._took(f, result)
        self.apply()

    def apply(self) -> None:
        """The names of the leases active now (each poll: expiry needs no change of a file)."""
        hosts, ignored, self._owners = lease_hosts(
            {str(f.path): f.leases for f in self.files},
            self.vlan_of,
            self.domains,
            self.wall_clock(),
            self._owners,
            self.reserved,
        )
        if len(hosts) > const.DHCP_MAX_HOSTS:
            self.ignored["too_many"] += len(hosts) - const.DHCP_MAX_HOSTS
            hosts = hosts[: const.DHCP_MAX_HOSTS]
        fresh = set(ignored) - self._seen_ignored
        for item in sorted(fresh, key=lambda i: (i.source, i.address)):
            self.ignored[item.reason] += 1
            log.info(
                "lease %s in %s: host name %r not published (%s)",
                item.address,
                item.source,
                item.hostname[:80],
                item.reason,
            )
        self._seen_ignored = set(ignored)
        if hosts != self.hosts:
            log.info(
                "lease host names: %s",
                ", ".join(f"{h.host} on {h.vlan}" for h in hosts[:20]) or "none",
            )
        self.hosts = hosts
        self.on_hosts(hosts)

    def _took(self, f: _File, result: tuple[_Stat, Sequence[Lease], int] | str) -> None:
        if isinstance(result, str):
            self.read_errors[str(f.path)] += 1
            if result != f.error:
                log.warning("lease file %s: %s; its last leases stay in force", f.path, result)
            f.error = result
            return
        stat, leases, malformed = result
        self.reads += 1
        if f.error:
            log.info("lease file %s: readable again (%d leases)", f.path, len(leases))
        f.error = ""
        f.stat, f.leases = stat, tuple(leases)
        if malformed:
            f.malformed += malformed
            log.info("lease file %s: %d line(s) could not be read, skipped", f.path, malformed)


def _stat(path: Path) -> _Stat | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _read(fmt: str, path: Path) -> tuple[_Stat, Sequence[Lease], int] | str | None:
    """One file's leases (in a worker thread), or what went wrong; None if its stat moved
    while it was read (the server was writing it)."""
    before = _stat(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(const.DHCP_MAX_FILE_BYTES + 1)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if len(data) > const.DHCP_MAX_FILE_BYTES:
        return f"more than {const.DHCP_MAX_FILE_BYTES} bytes (not read)"
    after = _stat(path)
    if before is None or after != before:
        return None
    parsed = parse(fmt, data.decode("utf-8", "replace"))
    return after, parsed.leases, parsed.malformed
