"""The process's memory: keeping CPython's cyclic collector off the record store, and handing
freed heap back to the system.

The store holds tens of thousands of long-lived records (an entry, its rdata, names, key
tuples, RRset lists), none of them in a reference cycle: reference counting frees each the
moment it is evicted or expires. The cyclic collector still walks every container object it
has not yet promoted, and in a flood of new announcements (the store full, each record
living about a second) it walked ~400,000 young records per collection: 20-50 ms pauses,
a sixth of the CPU per reflected packet at the store's cap (measured with an in-process
harness feeding announcements to ingest and the reflector, and in the lab benchmark).

So every ``const.MEMORY_INTERVAL`` (a quarter of a second) everything alive is frozen
(``gc.freeze``: moved out of the collector's generations, O(1), and the young generation's
count restarts; frozen objects are still freed by reference counting as usual): the young
generation only ever holds the last quarter second's allocations, fewer than a collection
needs even while the store fills at 48,000 records a second. The rare cycles (an
exception and its traceback, a library's request objects) are found by a full collection
every ``const.GC_FULL_INTERVAL`` seconds, which unfreezes everything first: garbage in
cycles lives at most that long. That collection walks every object, ~200 ms with the store
full (50,000 records; measured), once in ten minutes; CPython's own oldest-generation
collections, which this replaces, walked as much.
"""

from __future__ import annotations

import gc
import importlib
import ssl
import sys
import threading
from collections.abc import Callable

from . import const

_MALLOC_TRIM: Callable[[int], int] | bool | None = False  # False: not looked up yet


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, where there is one (not on musl or other C libraries), looked up
    at the first trim: ctypes is imported then, not with this module (+0.32 MB of RSS and
    three modules before the first DNS answer; a gateway at rest with no records never
    trims)."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is False:
        import ctypes

        try:
            _MALLOC_TRIM = ctypes.CDLL(None).malloc_trim  # the process's own libc
        except (OSError, AttributeError):
            _MALLOC_TRIM = None
    return _MALLOC_TRIM if callable(_MALLOC_TRIM) else None


_IMPORTING = threading.Lock()


def import_aiohttp(module: str = "aiohttp") -> None:
    """Import aiohttp (or ``module``, one of its modules: the HTTP surface's ``aiohttp.web``)
    without three things it loads at import and the gateway never uses.

    - The system CA bundle in the two default TLS contexts its client module
      (aiohttp.connector) builds. The gateway's one client, the Kubernetes policy source,
      hands aiohttp its own context (kubeauth) or none, so they are never used, and the
      bundle (144 CAs here) was 2.0 MB of RSS: ``import aiohttp.web``, three runs each,
      +13.8-13.9 -> +11.8-11.9 MB. A client that did use them would fail verification (no
      CA), never pass unverified. Only this thread's contexts skip the bundle while it
      imports; another thread's (kubeauth resolving meanwhile) load it as always.
    - frozenlist's C extension (aiosignal's base, so aiohttp's signals and middleware list):
      it is C++ and loads libstdc++ and libgcc_s, 1.1 MB of RSS (the pure class instead:
      ~0.4 us more per request for the few reads of those lists, timeit).
    - The system's MIME tables (/etc/mime.types, ~2,000 types, 0.4 MB): aiohttp's static
      file responses build a ``MimeTypes()`` of Python's defaults at import, whose
      constructor reads them into mimetypes' module database first, used by nobody here.
      They are read at the first ``mimetypes.guess_type`` instead, as without aiohttp.
    The last two, measured as ``app._import_late`` from a fresh interpreter (bridge.app
    imported), three runs each: +13.70 / 13.67 / 13.74 -> +12.23 / 12.25 / 12.23 MB VmRSS."""
    import mimetypes  # here: not among the modules before the first DNS answer

    with _IMPORTING:
        if module in sys.modules:
            return
        cls, importer = ssl.SSLContext, threading.get_ident()
        own = vars(cls).get("set_default_verify_paths")
        load = cls.set_default_verify_paths

        def default_paths(context: ssl.SSLContext) -> None:
            if threading.get_ident() != importer:
                load(context)

        cls.set_default_verify_paths = default_paths  # type: ignore[method-assign,assignment]
        # None in sys.modules makes the extension's import fail: frozenlist falls back to
        # its pure class (its documented FROZENLIST_NO_EXTENSIONS would be process-wide)
        blocked = "frozenlist" not in sys.modules and "frozenlist._frozenlist" not in sys.modules
        if blocked:
            sys.modules["frozenlist._frozenlist"] = None  # type: ignore[assignment]
        defer_mime = not mimetypes.inited  # MimeTypes() then skips mimetypes.init()
        mimetypes.inited = True
        try:
            importlib.import_module(module)
        finally:
            if defer_mime:
                mimetypes.inited = False  # and guess_type still reads the tables on first use
            if blocked and sys.modules.get("frozenlist._frozenlist", 0) is None:
                del sys.modules["frozenlist._frozenlist"]
            if own is None:
                del cls.set_default_verify_paths
            else:
                cls.set_default_verify_paths = own  # type: ignore[method-assign]


class MemoryKeeper:
    """``tick`` every ``const.MEMORY_INTERVAL`` seconds; the collector is managed only once
    ``manage_collector`` was called (by the service, not by a program embedding it)."""

    def __init__(
        self, size: Callable[[], int], answer_bytes: Callable[[], int] = lambda: 0
    ) -> None:
        self._size = size  # the record store's size
        self._answer_bytes = answer_bytes  # the pre-rendered answers' (dnsfront.cache.Budget)
        self._trimmed_at = 0  # store size at the last malloc_trim
        self._trimmed_bytes = 0  # and the answers' bytes
        self.trims = 0
        self._full_at: float | None = None  # None: the collector is left as it is
        self.full_collections = 0
        self.cycles_found = 0  # objects the full collections freed

    def manage_collector(self, now: float) -> None:
        gc.freeze()  # what start-up built (modules, config, policy tables) stays
        gc.set_threshold(*const.GC_THRESHOLDS)
        self._full_at = now

    def tick(self, now: float) -> None:
        self._trim()
        if self._full_at is None:
            return
        if now - self._full_at >= const.GC_FULL_INTERVAL:
            self._full_at = now
            gc.unfreeze()
            self.cycles_found += gc.collect()
            self.full_collections += 1
        gc.freeze()

    def _trim(self) -> None:
        """After the store grew or shrank by many records, hand the C heap's free memory back
        to the system: the store's dicts and schedules grow by reallocation, and glibc keeps
        the old blocks (measured: ~2 MB of RSS after 10,000 services arrive). Likewise after the
        pre-rendered answers grew or shrank by ``const.MEMORY_TRIM_ANSWER_BYTES``: answers over
        512 B and the caches' dicts are the C heap's, and every name of 10,000 services asked
        left ~4 MB free in it (loadtest.memprofile plus malloc_trim: 81.0 -> 77.4 MB RSS). The
        answers' bytes are bounded (const.DNS_ANSWER_CACHE_BYTES), so a query flood that keeps
        the cache full churning does not trim over and over."""
        size, answers = self._size(), self._answer_bytes()
        if (
            abs(size - self._trimmed_at) >= const.MEMORY_TRIM_RECORDS
            or abs(answers - self._trimmed_bytes) >= const.MEMORY_TRIM_ANSWER_BYTES
        ) and (trim := _malloc_trim()) is not None:
            self._trimmed_at, self._trimmed_bytes = size, answers
            self.trims += 1
            trim(0)
