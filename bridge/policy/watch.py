"""Hot reload of the policies directory.

:class:`PolicyWatcher` polls the directory's signature: for every file :func:`load_policy_dir`
reads, its name, mtime, size and inode (symlinks followed, so a Kubernetes ConfigMap's atomic
``..data`` swap is seen) and a hash of its content. The content is read only while a file is
"racy", i.e. modified within the last :data:`RACY_WINDOW_NS` (two same-size writes within one
timestamp tick leave mtime and size unchanged) or when its stat changed; otherwise the hash is
remembered.

A change is applied once the signature has been stable for one poll, so a file caught half
written is not reported as an error: with the default 0.5 s interval a change applies within
about 1 s. An invalid policy set is reported once through ``on_error`` and the previous engine
stays in force; ``on_change`` is called only when the policies really differ, or when a valid set
is back after a rejected one (then with the engine in force, so the caller can clear its error).
:meth:`PolicyWatcher.reload_now` reloads at once (SIGHUP) and reports even a repeated error.

In the gateway, reading and parsing run in a worker thread (:meth:`PolicyWatcher.poll_async`,
:meth:`PolicyWatcher.reload`): a 1 MB file once kept the event loop, and every DNS answer, away
for 9 s. Only applying the result runs on the loop. SIGHUPs that arrive while a reload runs
coalesce into one more reload (10 SIGHUPs of 4,096 policies once cost 19 s without DNS).
:meth:`poll` and :meth:`reload_now` do the same synchronously (tests, ``check``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Final, TypeVar

from .announcement import ServiceAnnouncement
from .engine import PolicyEngine
from .loading import load_resource_dir, policy_files, read_bounded
from .model import MAX_FILE_BYTES, PolicyError

__all__ = ["PolicyWatcher"]

logger = logging.getLogger(__name__)

#: ns; a file modified this recently may change again without changing mtime or size (timestamps
#: come from a coarse clock, ticks of up to 10 ms), so its content is hashed on every poll
RACY_WINDOW_NS: Final = 2_000_000_000
#: s; the default polling interval: changes apply within about two intervals
DEFAULT_INTERVAL: Final = 0.5

_Entry = tuple[str, int, int, int, bytes]
_Signature = tuple[_Entry, ...]
#: the signature of a directory that cannot be listed (no file has an empty name)
_MISSING: Final[_Signature] = (("", -1, -1, -1, b""),)
_T = TypeVar("_T")
Announcements = tuple[ServiceAnnouncement, ...]


class PolicyWatcher:
    """Watches a policies directory and hands each new valid :class:`PolicyEngine` to a callback.

    ``on_change(engine)`` runs on the event loop after every successful change;
    ``on_error(message)`` gets the :class:`PolicyError` text (file, document, field, reason) of a
    rejected change; ``on_announcements(announcements)`` gets the directory's
    ServiceAnnouncements whenever they change (the same load: one set is in force or neither).
    Exceptions raised by the callbacks are logged, never propagated.
    """

    def __init__(
        self,
        path: Path,
        vlans: Collection[str],
        on_change: Callable[[PolicyEngine], None],
        on_error: Callable[[str], None],
        interval: float = DEFAULT_INTERVAL,
        *,
        engine: PolicyEngine | None = None,
        on_announcements: Callable[[Announcements], None] | None = None,
    ) -> None:
        """``engine`` is the engine already in force, if the caller loaded one at start-up."""
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.path = Path(path)
        self.vlans: frozenset[str] = frozenset(vlans)
        self.interval = interval
        self._on_change = on_change
        self._on_error = on_error
        self._engine = engine
        self._on_announcements = on_announcements
        self.announcements: Announcements = ()  # those in force
        self._applied: _Signature | None = None  # the signature of the engine in force
        self._failed: _Signature | None = None  # the last signature that failed to load
        self._pending: _Signature | None = None  # a new signature, waiting one poll to settle
        self._hashes: dict[str, tuple[tuple[int, int, int], bytes]] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None  # one read at a time (the thread and the loop)
        self._hups = 0  # SIGHUPs not yet covered by a reload that started after them
        self.reloads = 0  # successful loads that changed the policies
        self.errors = 0  # rejected loads
        self.coalesced = 0  # SIGHUPs covered by another SIGHUP's reload

    @property
    def engine(self) -> PolicyEngine | None:
        """The engine in force: the last good one, or None if none was ever loaded."""
        return self._engine

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start polling in the running loop. Loads at once if no engine is in force yet."""
        if self._task is not None and not self._task.done():
            return self._task
        if self._engine is None and self._applied is None and self._failed is None:
            self.reload_now()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"policy-watcher:{self.path}"
        )
        return self._task

    async def stop(self) -> None:
        """Stop polling and wait for the task to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll_async()
            except Exception:  # the watcher must outlive any surprise; the next poll retries
                logger.exception("policy watcher: poll of %s failed", self.path)

    def _locked(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def poll_async(self) -> bool:
        """:meth:`poll` with the directory read, parsed and compiled in a worker thread."""
        async with self._locked():
            signature = await asyncio.to_thread(self._signature)
            if not self._due(signature):
                return False
            return self._apply(signature, await asyncio.to_thread(self._read))

    async def reload(self) -> bool:
        """SIGHUP: reload off the loop, reporting even a repeated error. Returns True if valid.

        Signals that arrive while a reload runs wait for it, then share a single new reload.
        """
        self._hups += 1
        async with self._locked():
            if self._hups == 0:  # a reload that began after this signal has covered it
                self.coalesced += 1
                return self._failed is None and self._applied is not None
            self._hups = 0
            self._pending = None
            signature = await asyncio.to_thread(self._signature)
            return self._apply(signature, await asyncio.to_thread(self._read))

    # -- polling ----------------------------------------------------------------------------------

    def poll(self) -> bool:
        """One polling step. Returns True when it applied a change."""
        signature = self._signature()
        if not self._due(signature):
            return False
        return self._apply(signature, self._read())

    def _due(self, signature: _Signature) -> bool:
        """Whether a polled signature is to be loaded now (stable for one poll and not known)."""
        if signature == self._applied:
            self._pending = None
            if self._failed is not None and self._engine is not None:
                self._failed = None  # the rejected edit was undone: valid again
                self._call(self._on_change, self._engine)
            return False
        if signature != self._pending:
            self._pending = signature  # wait for one more poll: the writer may not be done
            return False
        self._pending = None
        return signature != self._failed  # a failed one is already reported: wait for an edit

    def reload_now(self) -> bool:
        """Reload at once (SIGHUP). Returns True if the policies are valid (changed or not)."""
        self._pending = None
        return self._apply(self._signature(), self._read())

    def _read(self) -> tuple[PolicyEngine, Announcements] | str:
        """The compiled policies and the announcements of the directory, or the problems
        (file, document, reason).

        Safe to run in a worker thread: it touches no state of the watcher.
        """
        try:
            found = load_resource_dir(self.path, self.vlans)
            return PolicyEngine(found.policies, self.vlans), found.announcements
        except PolicyError as exc:
            return str(exc)
        except Exception as exc:  # a loader bug must reject the set, not stop the watcher
            return f"{self.path}: cannot load: {type(exc).__name__}: {exc}; fix: report this"

    def _apply(
        self, signature: _Signature, result: tuple[PolicyEngine, Announcements] | str
    ) -> bool:
        """Put a read result in force (on the loop). Returns True if it was valid."""
        if isinstance(result, str):
            self._failed = signature
            self.errors += 1
            logger.warning(
                "policies in %s rejected, %s:\n%s",
                self.path,
                "the previous policies stay in force"
                if self._engine is not None
                else "the default policy is in force (every VLAN sees only itself)",
                result,
            )
            self._call(self._on_error, result)
            return False
        engine, announcements = result
        if announcements != self.announcements:
            self.announcements = announcements
            if self._on_announcements is not None:
                self._call(self._on_announcements, announcements)
        self._applied = signature
        recovered, self._failed = self._failed is not None, None
        if self._engine is not None and engine.policies == self._engine.policies:
            if recovered:  # valid again, with the policies in force
                self._call(self._on_change, self._engine)
            return True
        self._engine = engine
        self.reloads += 1
        logger.info("policies reloaded from %s: %d policies", self.path, len(engine.policies))
        self._call(self._on_change, engine)
        return True

    @staticmethod
    def _call(callback: Callable[[_T], None], arg: _T) -> None:
        try:
            callback(arg)
        except Exception:
            logger.exception("policy watcher: callback %r failed", callback)

    def _signature(self) -> _Signature:
        try:
            files = policy_files(self.path)
        except OSError:
            self._hashes.clear()
            return _MISSING
        now = time.time_ns()
        entries = [self._entry(file, now) for file in files]
        names = {e[0] for e in entries}
        for name in [n for n in self._hashes if n not in names]:
            del self._hashes[name]
        return tuple(entries)

    def _entry(self, file: Path, now: int) -> _Entry:
        name = file.name
        try:
            st = file.stat()
        except OSError:  # vanished between listing and stat
            return (name, -1, -1, -1, b"")
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._hashes.get(name)
        racy = now - st.st_mtime_ns < RACY_WINDOW_NS
        if cached is not None and cached[0] == key and not racy:
            return (name, *key, cached[1])
        digest = b""
        if st.st_size <= MAX_FILE_BYTES:
            try:  # bounded: st_size says 0 for a symlink to a /proc file
                digest = hashlib.blake2b(read_bounded(file), digest_size=16).digest()
            except OSError:
                digest = b"unreadable"
        self._hashes[name] = (key, digest)
        return (name, *key, digest)
