"""Optional C compilation of the measured hot-path modules, as python-zeroconf does.

The packet path (parse, store, reflect) is plain Python; compiled by Cython, unchanged, it
runs ~30 % faster (README, "Performance", has the figures). Only these modules are compiled,
each measured on that path with ``python -m loadtest.profile --reflector``:
"""

from __future__ import annotations

import os
from typing import Any

COMPILED = [
    "bridge/mdns/transport.py",
    "bridge/mdns/links.py",
    "bridge/mdns/wire.py",
    "bridge/mdns/rewrite.py",
    "bridge/mdns/ingest.py",
    "bridge/mdns/browser.py",
    "bridge/store.py",
    "bridge/dnssd.py",
    "bridge/reflector/plan.py",
    "bridge/reflector/suppress.py",
    "bridge/reflector/decide.py",
    "bridge/reflector/shell.py",
    # the DNS front end's UDP loop and its cached-answer path (loadtest "udp"). Callgrind,
    # DnsServer._udp_ready on batches of 64 cached queries: 5,309 -> 4,835 instructions per
    # cached answer (README, "UDP batching"); fastpath.cached moved here from answer.py
    # (interpreted until then): 4,868 -> 4,039
    "bridge/dnsfront/server.py",
    "bridge/dnsfront/fastpath.py",
    # Cython source, not Python: recvmmsg/sendmmsg for the UDP listeners (the pure-Python
    # build answers through udpio.Datagrams instead); loadtest "udp", README "Performance"
    "bridge/dnsfront/mmsg.pyx",
]
ENV = "MDNS_GATEWAY_COMPILE"  # 1: compile them (Cython and a C compiler needed)

# annotation_typing off: annotations stay hints (``int`` would refuse socket.AddressFamily)
DIRECTIVES = {"language_level": "3", "annotation_typing": False}


def extensions() -> list[Any]:
    """The extension modules to build: none unless ``MDNS_GATEWAY_COMPILE=1``."""
    if os.environ.get(ENV) != "1":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        raise SystemExit(
            f"{ENV}=1 but Cython is not installed ({exc}); fix: "
            "pip install cython, or unset it for the pure-Python build"
        ) from exc
    # C sources go to build/, never beside the Python ones
    return list(
        cythonize(COMPILED, compiler_directives=DIRECTIVES, build_dir="build/cython", quiet=True)
    )


def not_compiled() -> list[str]:
    """The listed modules that import from their Python source instead of a built extension
    (``make test-compiled`` checks there are none before it runs the tests)."""
    import importlib
    from importlib.machinery import EXTENSION_SUFFIXES

    found = []
    for path in COMPILED:
        module = importlib.import_module(os.path.splitext(path)[0].replace("/", "."))
        if not str(module.__file__).endswith(tuple(EXTENSION_SUFFIXES)):
            found.append(str(module.__file__))
    return found
