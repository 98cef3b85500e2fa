"""The memory keeper: the collector never walks the record store, yet cycles are still freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge import const, memory
from bridge.memory import MemoryKeeper
from tests.support.fresh import ROOT, fresh_python


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def collector_state() -> Iterator[None]:
    """The test process's collector as it was (the keeper changes it process-wide)."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_a_tick_freezes_what_is_alive_and_leaves_the_collector_thresholds(
    collector_state: None,
) -> None:
    keeper = MemoryKeeper(lambda: 0)
    keeper.manage_collector(100.0)
    assert gc.get_threshold() == const.GC_THRESHOLDS
    records = [[i] for i in range(2000)]  # long-lived containers, like the store's
    assert gc.get_count()[0] >= 1000
    frozen = gc.get_freeze_count()
    keeper.tick(101.0)
    assert gc.get_freeze_count() >= frozen + 1000  # out of the young generation's walk
    assert gc.get_count()[0] < 1000
    del records  # frozen objects are still freed by reference counting
    assert keeper.full_collections == 0


def test_cycles_are_freed_by_the_full_collection(collector_state: None) -> None:
    keeper = MemoryKeeper(lambda: 0)
    keeper.manage_collector(100.0)
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    del a, b
    keeper.tick(101.0)  # the cycle is frozen with everything else
    gc.collect()
    assert alive() is not None  # frozen: not seen by an ordinary collection
    keeper.tick(100.0 + const.GC_FULL_INTERVAL - 1)
    assert alive() is not None and keeper.full_collections == 0
    keeper.tick(100.0 + const.GC_FULL_INTERVAL)
    assert alive() is None
    assert keeper.full_collections == 1 and keeper.cycles_found >= 2


def test_without_manage_collector_the_collector_is_left_alone(collector_state: None) -> None:
    keeper = MemoryKeeper(lambda: 0)
    frozen = gc.get_freeze_count()
    thresholds = gc.get_threshold()
    keeper.tick(10_000.0)
    assert gc.get_freeze_count() == frozen and gc.get_threshold() == thresholds


def test_the_heap_is_trimmed_after_the_store_or_the_answers_moved_by_their_step() -> None:
    """malloc_trim after the store grew or shrank by MEMORY_TRIM_RECORDS, or the pre-rendered
    answers by MEMORY_TRIM_ANSWER_BYTES, since the last trim; not on every tick."""
    # every supported platform (Debian, the Debian-based image) has glibc's malloc_trim: a
    # failure here means the gateway lost its trim, not that the test does not apply
    assert memory._malloc_trim() is not None, "malloc_trim not found in the C library"
    size, answers = [0], [0]
    keeper = MemoryKeeper(lambda: size[0], lambda: answers[0])
    keeper.tick(1.0)
    assert keeper.trims == 0
    size[0] = const.MEMORY_TRIM_RECORDS - 1
    answers[0] = const.MEMORY_TRIM_ANSWER_BYTES - 1
    keeper.tick(2.0)
    assert keeper.trims == 0
    answers[0] += 1  # the answers' step
    keeper.tick(3.0)
    keeper.tick(4.0)
    assert keeper.trims == 1
    size[0] += 1  # the store: 1,000 records since that trim, not yet its step
    keeper.tick(5.0)
    assert keeper.trims == 1
    size[0] = -1  # shrinking counts as growing does
    keeper.tick(6.0)
    assert keeper.trims == 2
    answers[0] = 0  # the answers dropped (a VLAN's changed): 1 MiB since the last trim
    keeper.tick(7.0)
    assert keeper.trims == 3


def test_aiohttp_is_imported_without_the_ca_bundle_of_its_unused_default_contexts() -> None:
    """Its default contexts hold no CA (2 MB of RSS); contexts made afterwards, and the
    SSLContext class, are as before. In a fresh interpreter: aiohttp is imported only once."""
    code = (
        "import ssl, sys\n"
        "before = ssl.create_default_context().cert_store_stats()['x509_ca']\n"
        "from bridge.memory import import_aiohttp\n"
        "import_aiohttp()\n"
        "import aiohttp.connector as c\n"
        "held = c._SSL_CONTEXT_VERIFIED.cert_store_stats()['x509_ca']\n"
        "after = ssl.create_default_context().cert_store_stats()['x509_ca']\n"
        "print(before, held, after, 'set_default_verify_paths' in vars(ssl.SSLContext))\n"
    )
    # a bundle of one CA of the tests' own as OpenSSL's default (SSL_CERT_FILE), so that the
    # test does not depend on the machine having ca-certificates
    ca = ROOT / "tests" / "data" / "test-ca.pem"
    out = fresh_python(code, {"SSL_CERT_FILE": str(ca), "SSL_CERT_DIR": str(ca.parent)}).split()
    before, held, after, patched = int(out[0]), int(out[1]), int(out[2]), out[3]
    assert before == 1  # the default contexts do load the bundle
    assert held == 0 and after == before and patched == "False"


def test_aiohttp_is_imported_without_libstdcxx_and_without_reading_the_mime_tables(
    tmp_path: Path,
) -> None:
    """frozenlist's C++ extension is not loaded (its pure class serves aiohttp's signals), and
    the system's MIME tables are not read while aiohttp imports but still at the first
    ``mimetypes.guess_type``; aiohttp's own file types are as before. In a fresh interpreter."""
    table = tmp_path / "mime.types"
    table.write_text("application/x-gateway-test\tgwtest\n")
    code = (
        "import mimetypes, sys\n"
        f"mimetypes.knownfiles = [{str(table)!r}]\n"
        "from bridge.memory import import_aiohttp\n"
        "import_aiohttp('aiohttp.web')\n"
        "import frozenlist, aiohttp.web_app, aiohttp.web_fileresponse as f\n"
        "maps = open('/proc/self/maps').read()\n"
        "print('libstdc++' in maps, 'frozenlist._frozenlist' in sys.modules,\n"
        "      aiohttp.web_app.FrozenList is frozenlist.PyFrozenList,\n"
        "      mimetypes._db is None, mimetypes.inited,\n"
        "      f.CONTENT_TYPES.guess_type('a.html')[0],\n"
        "      f.CONTENT_TYPES.guess_type('a.gwtest')[0],\n"
        "      mimetypes.guess_type('a.gwtest')[0], mimetypes.inited)\n"
    )
    out = fresh_python(code).split()
    assert out[:5] == ["False", "False", "True", "True", "False"]
    # aiohttp's MimeTypes() holds Python's defaults only, whether or not the tables were read
    assert out[5:7] == ["text/html", "None"]
    assert out[7:] == ["application/x-gateway-test", "True"]  # read at the first guess


def test_ctypes_is_imported_at_the_first_trim_not_before_dns_or_at_rest() -> None:
    """bridge.memory looks malloc_trim up when it first trims: the modules before the first
    DNS answer and the late imports leave ctypes out (0.32 MB); the first trim imports it
    and trims. In a fresh interpreter."""
    code = (
        "import sys\n"
        "import bridge.cli, bridge.app\n"
        "bridge.app._import_late()\n"
        "at_rest = 'ctypes' in sys.modules\n"
        "from bridge.memory import MemoryKeeper\n"
        "keeper = MemoryKeeper(lambda: 0)\n"
        "keeper.tick(1.0)\n"
        "idle = 'ctypes' in sys.modules\n"
        "keeper = MemoryKeeper(lambda: 1_000_000)\n"
        "keeper.tick(1.0)\n"
        "print(at_rest, idle, 'ctypes' in sys.modules, keeper.trims)\n"
    )
    assert fresh_python(code).split() == ["False", "False", "True", "1"]
