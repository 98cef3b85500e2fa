"""dnspython's optional-feature check, answered without ``importlib.metadata`` at start-up.

``import dns.name`` imports ``dns._features``, which imports ``importlib.metadata`` (and through
it ``email``, ``zipfile``, ``csv``, ``textwrap``: 31 modules) to ask one question when
``dns.name`` is imported: is idna new enough for dnspython's IDNA 2008 codec (``have("idna")``,
the distribution's version against dnspython's requirement)? The gateway answers it from the
idna module's own ``__version__`` and tells dnspython (``dns._features.force``, its API for
where metadata is ineffective), and ``importlib.metadata`` is a stand-in until something uses
it: its first attribute read imports the real module, so a later ``have("doh")`` or any other
user gets the real answers. Callgrind, exec to the first answer (docs/performance.md,
"Start-up"): 345 -> 314 modules, 810.5 -> 764.8 M instructions (-5.6 %).

``install`` must run before anything imports dnspython (``bridge/__init__.py`` calls it
first); imported after, it leaves dnspython to answer for itself.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types

_METADATA = "importlib.metadata"
_lock = threading.Lock()


class _Deferred(types.ModuleType):
    """``importlib.metadata`` until an attribute of it is read: then the real module, in its
    place in ``sys.modules`` and on the ``importlib`` package, and the attribute from it."""

    def __getattr__(self, name: str) -> object:
        with _lock:
            if sys.modules.get(_METADATA) is self:
                del sys.modules[_METADATA]
                if importlib.__dict__.get("metadata") is self:
                    del importlib.__dict__["metadata"]
        return getattr(importlib.import_module(_METADATA), name)


def _version(text: str) -> tuple[int, ...]:
    """The leading numbers of a version, as dnspython compares them ("3.20rc1" -> (3, 20))."""
    parts = []
    for part in text.split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def idna_answer(requirements: list[str]) -> bool | None:
    """dnspython's ``have("idna")`` from the idna module, or None when the requirement is not
    the one form dnspython has ("idna>=VERSION"): then dnspython is left to ask the metadata."""
    if len(requirements) != 1 or not requirements[0].startswith("idna>="):
        return None
    try:
        import idna
    except ImportError:
        return False
    version = getattr(idna, "__version__", None)
    if not isinstance(version, str):
        return None
    return _version(version) >= _version(requirements[0].partition(">=")[2])


def install() -> None:
    """Answer ``have("idna")`` for dnspython and defer ``importlib.metadata``; does nothing once
    dnspython's feature check or the metadata module is already imported."""
    if "dns._features" in sys.modules or _METADATA in sys.modules:
        return
    stand_in = _Deferred(_METADATA)
    sys.modules[_METADATA] = stand_in
    importlib.__dict__["metadata"] = stand_in  # what `import importlib.metadata` sets
    import dns._features

    requirements = getattr(dns._features, "_requirements", {}).get("idna")
    answer = idna_answer(requirements) if isinstance(requirements, list) else None
    force = getattr(dns._features, "force", None)
    if answer is not None and force is not None:
        force("idna", answer)
