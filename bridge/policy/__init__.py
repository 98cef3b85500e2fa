"""ServicePolicy resources -> one compiled, pure visibility engine.

Every surface asks the same engine: the record cache (what a view may see), the DNS resolver
(``.local``, wide-area, browse domains, ``_services._dns-sd._udp`` enumeration), the reflector
(``reflect: true`` policies) and the wide-area publisher (``wideArea: true`` policies).

Semantics (issue 3):

* A VLAN sees its own services by default. Nothing crosses VLANs unless an *allow* policy matches:
  ``from`` holds the service's VLAN (or ``"*"``), ``to`` holds the asking view (or ``"*"``),
  ``services`` holds the service type (or ``"*"``) and the instance is selected by ``instances``
  (it matches an ``allow`` glob, default ``["*"]``, and no ``deny`` glob).
* A matching *deny* policy wins over every allow, including the own-VLAN default. ``instances`` of
  a deny policy selects the instances it denies. A deny with ``hosts: true`` also hides the plain
  host names (A/AAAA) of its ``from`` VLANs.
* Globs are fnmatch-style (``*``, ``?``, ``[seq]``), case-insensitive, on the decoded instance
  label.
* Subtypes (``_printer._sub._http._tcp``) follow their parent type; callers pass the parent.
* The view ``"*"`` is the router itself: it sees everything.

Modules by concept: :mod:`.model` (the resource, its limits and patterns, :class:`PolicyError`),
:mod:`.announcement` (the ServiceAnnouncement resource, loaded beside the policies),
:mod:`.document` (one document's problems and the checks every kind shares), :mod:`.loading`
(files -> validated resources), :mod:`.engine` (the compiled engine),
:mod:`.instances` (instance globs), :mod:`.explain` (why a view sees a service or not) and
:mod:`.watch` (hot reload of the policies directory). Nothing does I/O except
:func:`load_policy_dir`, which reads the files it is given, and the watcher.
:class:`ViewPolicy` answers are precomputed per view and memoised per (VLAN, type) and, only when a
glob decides, per instance, in bounded dicts, so the hot path is one or two dict look-ups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .engine import PolicyEngine, ViewPolicy, default_engine
from .loading import load_policy_dir, parse_policy_text, policy_files
from .model import (
    ANY,
    API_VERSION,
    CRD_KIND,
    KIND,
    MAX_FILE_BYTES,
    PolicyError,
    ServicePolicy,
    normalize_service_type,
    split_service_name,
)
from .watch import PolicyWatcher

if TYPE_CHECKING:
    from .explain import Explanation


def __getattr__(name: str) -> Any:
    """``Explanation`` from :mod:`.explain`, imported when first asked for: only an explain
    request uses it, and its dataclass is ~4 M instructions of start-up (docs/performance.md,
    "Start-up")."""
    if name == "Explanation":
        from .explain import Explanation

        return Explanation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ANY",
    "API_VERSION",
    "CRD_KIND",
    "KIND",
    "MAX_FILE_BYTES",
    "Explanation",
    "PolicyEngine",
    "PolicyError",
    "PolicyWatcher",
    "ServicePolicy",
    "ViewPolicy",
    "default_engine",
    "load_policy_dir",
    "normalize_service_type",
    "parse_policy_text",
    "policy_files",
    "split_service_name",
]
