"""mdns-gateway: an mDNS / DNS-SD gateway for routers with VLANs."""

from pathlib import Path

__version__ = "0.1.0"


def _refuse_stale_binaries() -> None:
    """In a checkout, a module compiled in place (build_ext.py) shadows its .py: refuse to run
    one older than its source rather than silently run old code."""
    here = Path(__file__).resolve().parent
    if not (here.parent / "build_ext.py").exists():
        return  # an installed package: its files come from one build
    for binary in here.rglob("*.so"):
        source = binary.with_name(binary.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > binary.stat().st_mtime:
            raise ImportError(
                f"{binary} is older than {source.name}; fix: rebuild it "
                "(MDNS_GATEWAY_COMPILE=1 python setup.py build_ext --inplace) "
                "or remove it (make clean-compiled)"
            )


_refuse_stale_binaries()

# before anything imports dnspython: its feature check without importlib.metadata (start-up)
from . import dnsfeatures as _dnsfeatures  # noqa: E402

_dnsfeatures.install()

# names as dict keys hash with Python's seeded hash (wire.py says why): set before any module
# builds a dict keyed by dnspython names
from .mdns import wire as _wire  # noqa: E402,F401
