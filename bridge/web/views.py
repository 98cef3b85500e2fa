"""What the HTTP surface shows, as plain dicts: pure functions of the diagnostics window.

The aiohttp handlers (server.py) only turn these into JSON; tests call them without sockets.
Everything listed is bounded (HTTP_MAX_RECORDS_LISTED, WEB_MAX_SERVICES, WEB_TOP_N, EVENTS_MAX),
with the totals beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import dns.name
import dns.rdatatype

from .. import const, dnssd
from ..config import ALL_VIEW
from ..diagnostics import Diagnostics
from ..policy import PolicyEngine
from ..policy.model import split_service_name

_PTR, _SRV, _TXT = dns.rdatatype.PTR, dns.rdatatype.SRV, dns.rdatatype.TXT
_A, _AAAA = dns.rdatatype.A, dns.rdatatype.AAAA
Json = dict[str, Any]


def unicode_name(name: dns.name.Name) -> str:
    """The name for people; as sent when it is no valid IDNA (an announced xn--.local made
    every /api/records request fail with 500)."""
    try:
        return name.to_unicode()
    except (dns.name.IDNAException, UnicodeError):
        return name.to_text()


def _never_seen(vlan: str, name: dns.name.Name) -> float | None:
    """First seen, without an event log (a program embedding the gateway without one)."""
    return None


def _remaining(value: float) -> float | None:
    return None if value == float("inf") else round(value, 1)


def vlans(diag: Diagnostics) -> Json:
    out: Json = {}
    refused = diag.refusals()
    for name, vlan in diag.vlans.items():
        link = diag.links.by_vlan.get(name)
        out[name] = {
            "interface": vlan.interface,
            "domain": vlan.domain.to_text(),
            "up": bool(link and link.up),
            "ifindex": link.ifindex if link else None,
            "subnets": [str(s) for s in link.subnets] if link else [],
            "trust_any_address": vlan.trust_any_address,
            # the record guard's refusals (README, "Security"), by reason
            "refused_records": {
                reason: n for (v, reason), n in sorted(refused.items()) if v == name
            },
        }
    return out


def records(diag: Diagnostics, vlan: str | None) -> Json:
    rows = []
    store = diag.store
    for c in store.items(diag.clock()):
        if vlan and c.vlan != vlan:
            continue
        origin, source = diag.origin(c)
        rows.append(
            {
                "vlan": c.vlan,
                "name": unicode_name(c.name),
                "type": c.rdtype,
                "rdata": c.rdata.to_text(),
                "ttl": c.ttl,
                "remaining": _remaining(c.remaining),
                "origin": origin,  # mdns, announcement, lease or router
                "source": source,  # the announcement or lease file, else null
            }
        )
        if len(rows) >= const.HTTP_MAX_RECORDS_LISTED:
            break
    return {"records": rows, "total": len(store)}


def policies(diag: Diagnostics) -> Json:
    policy = diag.policy()
    return {
        "valid": policy.error is None,
        "error": policy.error,
        "rejections": policy.rejections,
        "reloads": policy.reloads,
        "policies": [
            {"name": p.name, "source": p.where, "action": p.action} for p in policy.engine.policies
        ],
    }


def check_view(diag: Diagnostics, view: str | None) -> str | None:
    """An error message for an unknown view (the router's ``*`` is one), else None."""
    if view is None or view == ALL_VIEW or view in diag.vlans:
        return None
    return f"unknown view {view!r}; use one of {', '.join(sorted(diag.vlans))} or '*'"


def _service_types(diag: Diagnostics, vlan: str) -> Iterator[dns.name.Name]:
    for name in diag.store.names(vlan):
        if len(name.labels) == 4 and dnssd.is_browse_target(name):
            yield name


def services(
    diag: Diagnostics,
    vlan: str | None = None,
    view: str | None = None,
    stype: str | None = None,
) -> Json:
    """Service instances per VLAN (those ``view`` may see, if given), with their SRV, TXT,
    addresses, first seen and TTL left; at most WEB_MAX_SERVICES per VLAN."""
    store, now = diag.store, diag.clock()
    engine = diag.policy().engine
    seen = diag.events.first_seen if diag.events is not None else _never_seen
    want = dnssd.service_type_text(stype) if stype else None
    out: Json = {}
    for v in diag.vlans:
        if vlan and v != vlan:
            continue
        rows: list[Json] = []
        total = 0
        for tname in _service_types(diag, v):
            parts = dnssd.service_parts(tname)
            if parts is None:
                continue
            t = parts[0]
            if want is not None and t != want:
                continue
            for ptr in store.get(v, tname, _PTR, now):
                target: dns.name.Name = ptr.rdata.target  # type: ignore[attr-defined]
                iparts = dnssd.service_parts(target)
                instance = iparts[1] if iparts and iparts[1] else target.to_text()
                if view is not None and not engine.view(view).service_visible(v, t, instance):
                    continue
                total += 1
                if len(rows) < const.WEB_MAX_SERVICES:
                    rows.append(_instance(diag, v, t, instance, target, ptr.remaining, seen))
        rows.sort(key=lambda r: (r["type"], r["instance"].lower()))
        out[v] = {"services": rows, "total": total, "hosts": hosts(diag, v)}
    return out


def _instance(
    diag: Diagnostics,
    vlan: str,
    stype: str,
    instance: str,
    target: dns.name.Name,
    remaining: float,
    seen: Callable[[str, dns.name.Name], float | None],
) -> Json:
    store, now = diag.store, diag.clock()
    host, port, addresses = None, None, []
    srv = store.get(vlan, target, _SRV, now)
    if srv:
        rd = srv[0].rdata
        host_name: dns.name.Name = rd.target  # type: ignore[attr-defined]
        host, port = unicode_name(host_name), rd.port  # type: ignore[attr-defined]
        for rdtype in (_A, _AAAA):
            addresses += [c.rdata.to_text() for c in store.get(vlan, host_name, rdtype, now)]
    txt = []
    for c in store.get(vlan, target, _TXT, now):
        txt += [s.decode("utf-8", "replace") for s in c.rdata.strings]  # type: ignore[attr-defined]
    return {
        "type": stype,
        "instance": instance,
        "name": unicode_name(target),
        "host": host,
        "port": port,
        "addresses": addresses,
        "txt": [t for t in txt if t],
        "first_seen": seen(vlan, target),
        "ttl_left": _remaining(remaining),
    }


def hosts(diag: Diagnostics, vlan: str) -> list[Json]:
    """Host names with addresses on ``vlan`` (A and AAAA owners), at most WEB_MAX_SERVICES."""
    store, now = diag.store, diag.clock()
    out = []
    for name in diag.store.names(vlan):
        addrs = [c.rdata.to_text() for t in (_A, _AAAA) for c in store.get(vlan, name, t, now)]
        if addrs:
            out.append({"host": unicode_name(name), "addresses": addrs})
            if len(out) >= const.WEB_MAX_SERVICES:
                break
    out.sort(key=lambda h: str(h["host"]))
    return out


def matrix(diag: Diagnostics) -> Json:
    """View x VLAN x service type: visible or not, and what decided (a policy's name or a
    default). The types are those held on any VLAN and those the policies name."""
    engine: PolicyEngine = diag.policy().engine
    types: set[str] = set()
    for v in diag.vlans:
        for tname in _service_types(diag, v):
            parts = dnssd.service_parts(tname)
            if parts is not None:
                types.add(parts[0])
    for p in engine.policies:
        types.update(t for t in p.services if t != "*")
    chosen = sorted(types)[: const.WEB_MAX_SERVICES]
    views = [*diag.vlans, ALL_VIEW]
    cells = []
    for view in views:
        for vlan in diag.vlans:
            for t in chosen:
                exp = engine.explain(view, vlan, t)
                cells.append(
                    {
                        "view": view,
                        "vlan": vlan,
                        "type": t,
                        "visible": exp.visible,
                        "reflect": exp.reflect,
                        "decided_by": exp.decided_by,
                    }
                )
    return {"views": views, "vlans": list(diag.vlans), "types": chosen, "cells": cells}


def reflection(diag: Diagnostics) -> Json:
    """Packets per direction (from, to) and outcome; to "" is decided for every destination."""
    if diag.reflected is None:
        return {"enabled": False, "directions": []}
    by_dir: dict[tuple[str, str], dict[str, int]] = {}
    for (src, dst, outcome), n in sorted(diag.reflected().items()):
        by_dir.setdefault((src, dst), {})[outcome] = n
    rows = [{"from": s, "to": d or "*", "outcomes": o} for (s, d), o in sorted(by_dir.items())]
    return {"enabled": True, "directions": rows}


def chrony(diag: Diagnostics) -> Json:
    if diag.chrony is None:
        return {"enabled": False, "servers": []}
    rows = []
    for st, advertised in diag.chrony():
        tr = st.tracking
        rows.append(
            {
                "name": st.server.name,
                "healthy": st.health.healthy,
                "reason": st.health.reason,
                "detail": st.health.detail,
                "offset": None if tr is None else tr.offset,
                "stratum": None if tr is None else tr.stratum,
                "advertised": st.advertised,
                "advertised_on": list(advertised),
            }
        )
    return {"enabled": True, "servers": rows}


def events(diag: Diagnostics) -> list[Json]:
    if diag.events is None:
        return []
    return [
        {"seq": e.seq, "at": e.at, "kind": e.kind, "vlan": e.vlan, "text": e.text}
        for e in diag.events.recent()
    ]


def top(diag: Diagnostics) -> Json:
    """Per VLAN: the sources holding the most records, the names asked most in queries."""
    out: Json = {}
    for v in diag.vlans:
        asked = diag.query_names.top(v) if diag.query_names is not None else []
        out[v] = {
            "advertisers": [
                {"source": s, "records": n} for s, n in diag.store.top_sources(v, const.WEB_TOP_N)
            ],
            "queried": [{"name": name, "queries": n} for name, n in asked],
        }
    return out


def state(diag: Diagnostics) -> Json:
    """Everything the page shows, in one document (sent at load and on every change)."""
    return {
        "now": diag.wall(),
        "ready": diag.ready(),
        "vlans": vlans(diag),
        "services": services(diag),
        "matrix": matrix(diag),
        "reflection": reflection(diag),
        "chrony": chrony(diag),
        "policies": policies(diag),
        "events": events(diag),
        "top": top(diag),
        "records": len(diag.store),
    }


def explain_live(diag: Diagnostics, view: str, vlan: str | None, service: str) -> Json:
    """``explain`` with what the gateway holds: does the service exist, on which VLANs, when
    was it last seen and first seen, what the policy says for each, would the reflector pass
    it. ``vlan`` None: every VLAN. Raises ValueError for a bad view, VLAN or service."""
    engine = diag.policy().engine
    stype, instance = split_service_name(service)
    store, now = diag.store, diag.clock()
    seen = diag.events.first_seen if diag.events is not None else _never_seen
    where = []
    for v in diag.vlans:
        if vlan is not None and v != vlan:
            continue
        exp = engine.explain(view, v, service)
        tname = dnssd.service_type_name(stype)
        held = []
        for ptr in store.get(v, tname, _PTR, now):
            target: dns.name.Name = ptr.rdata.target  # type: ignore[attr-defined]
            parts = dnssd.service_parts(target)
            name = parts[1] if parts and parts[1] else target.to_text()
            if instance is not None and name.lower() != instance.lower():
                continue
            ttl = ptr.ttl
            held.append(
                {
                    "instance": name,
                    "first_seen": seen(v, target),
                    # the last announcement is as old as the TTL used up
                    "last_seen_ago": round(max(0.0, ttl - ptr.remaining), 1),
                    "ttl_left": _remaining(ptr.remaining),
                }
            )
        where.append(
            {
                "vlan": v,
                "held": held,
                "visible": exp.visible,
                "reflect": exp.reflect,
                # the reflector passes it into the view: policy says so and it runs
                "reflected": exp.reflect and diag.reflected is not None,
                "decided_by": exp.decided_by,
                "reasons": list(exp.reasons),
            }
        )
    if vlan is not None and not where:
        raise ValueError(f"unknown VLAN {vlan!r}; use one of {', '.join(sorted(diag.vlans))}")
    return {
        "view": view,
        "service": service,
        "type": stype,
        "instance": instance,
        "exists": any(w["held"] for w in where),
        "reflector": diag.reflected is not None,
        "vlans": where,
    }
