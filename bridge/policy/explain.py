"""Why a view does or does not see a service: a plain walk over the policies, independent of the
memoised path that answers queries."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dns.name

from .instances import InstanceFilter, fold
from .model import (
    ANY,
    ServicePolicy,
    split_service_name,
)

if TYPE_CHECKING:
    from .engine import PolicyEngine


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a view does or does not see a service; ``str()`` gives readable lines."""

    view: str
    vlan: str
    service_type: str
    instance: str | None
    visible: bool
    reflect: bool
    wide_area: bool
    reasons: list[str] = field(default_factory=list)
    # what decided ``visible``: a policy's name, or one of the defaults (OWN_VLAN, NO_POLICY,
    # ROUTER_VIEW), for a one-word answer (the web page's matrix cell)
    decided_by: str = ""

    def __str__(self) -> str:
        return "\n".join(self.reasons)


def explain(
    engine: PolicyEngine,
    view: str,
    vlan: str,
    service: str,
    wide_area: tuple[dns.name.Name, str] | None = None,
) -> Explanation:
    """Which policies decide whether ``view`` sees ``service`` from ``vlan``, and why.

    ``service`` is a type (``"_ipp._tcp"``) or an instance (``"My Printer._ipp._tcp"``).
    ``wide_area``: the configured (zone, server), to say where a published service goes.
    Raises ValueError for an unknown view or VLAN or a malformed service name.
    """
    if view != ANY and view not in engine.vlans:
        raise ValueError(f"unknown view {view!r}; use one of {sorted(engine.vlans)} or '*'")
    if vlan not in engine.vlans:
        raise ValueError(f"unknown VLAN {vlan!r}; use one of {sorted(engine.vlans)}")
    stype, instance = split_service_name(service)
    vp = engine.view(view)
    visible = vp.service_visible(vlan, stype, instance)
    reflect = vp.reflect_visible(vlan, stype, instance)
    wide = vp.wide_area_visible(vlan, stype, instance)
    what = stype if instance is None else f"instance {instance!r} of {stype}"
    reasons = [f"view {view} sees {what} from VLAN {vlan}: {'yes' if visible else 'no'}"]
    if view == ANY:
        reasons.append("  the router's own view (*) sees every VLAN")
    else:
        reasons.extend(_why(engine, view, vlan, stype, instance))
    reasons.append(
        f"reflected into {view}: {'yes' if reflect else 'no'}"
        + ("" if view != ANY else " (nothing is reflected to the router)")
    )
    reasons.extend(_why_flag(engine, view, vlan, stype, instance, "reflect"))
    reasons.append(f"published wide-area: {'yes' if wide else 'no'}")
    reasons.extend(_why_flag(engine, view, vlan, stype, instance, "wideArea"))
    reasons.extend(
        _where(
            engine.view(ANY).wide_area_visible(vlan, stype, instance),
            vlan,
            stype,
            instance,
            wide_area,
        )
    )
    decided = _decided_by(engine, view, vlan, stype, instance)
    return Explanation(view, vlan, stype, instance, visible, reflect, wide, reasons, decided)


OWN_VLAN = "own VLAN (default)"
NO_POLICY = "no allow policy (default)"
ROUTER_VIEW = "router's view (*)"


def _decided_by(
    engine: PolicyEngine, view: str, vlan: str, stype: str, instance: str | None
) -> str:
    """The first deny that applies, else the first allow, else the default that held."""
    if view == ANY:
        return ROUTER_VIEW
    allow: ServicePolicy | None = None
    for p in engine.policies:
        if _matches(engine, p, view, vlan, stype, instance)[0]:
            if p.action == "deny":
                return p.name
            allow = allow or p
    if allow is not None:
        return allow.name
    return OWN_VLAN if view == vlan else NO_POLICY


def _where(
    published: bool,
    vlan: str,
    stype: str,
    instance: str | None,
    wide_area: tuple[dns.name.Name, str] | None,
) -> list[str]:
    """Where the publisher (which follows the router's view: any VLAN view's policy) puts it."""
    if not published:
        return []
    if wide_area is None:
        return ["  but the configuration has no wide_area: section: nothing is published"]
    zone, server = wide_area
    sub = dns.name.Name((vlan.encode(), *zone.labels))
    where = dns.name.Name((*dns.name.from_text(stype, origin=None).labels, *sub.labels))
    if instance is not None:
        where = dns.name.Name((instance.encode(), *where.labels))
    what = "as" if instance is not None else "under the type name"
    return [
        f"  published {what} {where.to_text()} (zone {zone.to_text()} on {server}), "
        "with its host's usable addresses"
    ]


def _matches(
    engine: PolicyEngine, p: ServicePolicy, view: str, vlan: str, stype: str, instance: str | None
) -> tuple[bool, str]:
    """Does ``p`` apply? Returns (applies, why not / how)."""
    if not (ANY in p.from_vlans or vlan in p.from_vlans):
        return False, f"from {_fmt(p.from_vlans)} does not include {vlan}"
    if not (ANY in p.to_vlans or view in p.to_vlans):
        return False, f"to {_fmt(p.to_vlans)} does not include {view}"
    if not (ANY in p.services or stype in p.services):
        return False, f"services {_fmt(p.services)} do not include {stype}"
    filt = InstanceFilter.of(p)
    how = f"from {_fmt(p.from_vlans)}, to {_fmt(p.to_vlans)}, services {_fmt(p.services)}"
    if p.instances_allow != (ANY,):
        how += f", instances.allow {list(p.instances_allow)}"
    if p.instances_deny:
        how += f", instances.deny {list(p.instances_deny)}"
    if instance is None:
        if p.action == "deny" and not filt.universal:
            return False, "it denies only some instances (instances globs); ask about one"
        return True, how + ("" if filt.universal else " (only the instances these select)")
    folded = fold(instance)
    if filt.allow is not None and filt.allow.match(folded) is None:
        return (
            False,
            f"instance {instance!r} matches no glob of instances.allow {list(p.instances_allow)}",
        )
    if filt.deny is not None and filt.deny.match(folded) is not None:
        hit = next(g for g in p.instances_deny if fnmatch.fnmatchcase(folded, fold(g)))
        return False, f"instance {instance!r} matches instances.deny glob {hit!r}"
    return True, how


def _why(engine: PolicyEngine, view: str, vlan: str, stype: str, instance: str | None) -> list[str]:
    lines: list[str] = []
    denies: list[tuple[ServicePolicy, str]] = []
    allows: list[tuple[ServicePolicy, str]] = []
    misses: list[tuple[ServicePolicy, str]] = []
    for p in engine.policies:
        applies, how = _matches(engine, p, view, vlan, stype, instance)
        if applies:
            (denies if p.action == "deny" else allows).append((p, how))
        elif (ANY in p.from_vlans or vlan in p.from_vlans) and (
            ANY in p.to_vlans or view in p.to_vlans
        ):
            misses.append((p, how))
    for p, how in denies:
        lines.append(f"  denied by policy {p.where}: {how}; a deny wins over every allow")
    for p, how in allows:
        verb = "would be allowed" if denies else "allowed"
        lines.append(f"  {verb} by policy {p.where}: {how}")
    if vlan == view:
        if denies:
            lines.append(
                "  the own-VLAN default (a VLAN sees its own services) is overridden by the deny"
            )
        else:
            lines.append("  own VLAN: a VLAN sees its own services by default")
    elif not denies and not allows:
        if misses:
            lines.append(
                "  not allowed: no allow policy applies (nothing crosses VLANs unless one does)"
            )
        else:
            lines.append(
                f"  no policy has {vlan} (or *) in from and {view} (or *) in to: "
                "nothing crosses VLANs unless an allow policy matches"
            )
    for p, how in misses:
        lines.append(f"  policy {p.where} does not apply: {how}")
    return lines


def _why_flag(
    engine: PolicyEngine, view: str, vlan: str, stype: str, instance: str | None, flag: str
) -> list[str]:
    if view == ANY:
        if flag == "reflect":
            return []
        views = [
            v
            for v in sorted(engine.vlans)
            if engine.view(v).wide_area_visible(vlan, stype, instance)
        ]
        if views:
            return [f"  published for the views {', '.join(views)}"]
        return ["  published for no VLAN view"]
    if flag == "reflect" and view == vlan:
        return ["  a VLAN's own services are never reflected back into it"]
    deciders: list[ServicePolicy] = []
    for p in engine.policies:
        applies, _ = _matches(engine, p, view, vlan, stype, instance)
        if not applies:
            continue
        if p.action == "deny":
            return [f"  denied by policy {p.where}; a deny wins over every allow"]
        if p.reflect if flag == "reflect" else p.wide_area:
            deciders.append(p)
    if deciders:
        return [f"  by policy {p.where} ({flag}: true)" for p in deciders]
    return [f"  no matching allow policy has {flag}: true"]


def _fmt(values: Iterable[str]) -> str:
    return "[" + ", ".join(sorted(values)) + "]"
