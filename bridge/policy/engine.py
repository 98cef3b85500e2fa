"""The compiled policy set: per-view answers, precomputed and memoised."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import dns.name

from ..dnssd import service_type_text
from .instances import InstanceFilter, fold
from .model import ANY, PolicyError, ServicePolicy

if TYPE_CHECKING:  # imported by explain() (start-up: docs/performance.md, "Start-up")
    from .explain import Explanation

#: memoised (VLAN, type) decisions per view and question kind; FIFO eviction beyond it
MEMO_MAX_TYPES: Final = 4096
#: memoised (VLAN, type, instance) decisions per view and question kind; FIFO eviction beyond it
MEMO_MAX_INSTANCES: Final = 16384


@dataclass(frozen=True, slots=True)
class _Rule:
    policy: ServicePolicy
    instances: InstanceFilter


@dataclass(frozen=True, slots=True)
class _TypeDecision:
    """What one view may see of one (VLAN, type), for one kind of question."""

    type_level: bool  # the answer without an instance (browse, enumeration)
    constant: bool | None  # the answer for every instance, or None when a glob decides
    base: bool  # own-VLAN default or an allow without instance globs applies
    allows: tuple[InstanceFilter, ...]
    denies: tuple[InstanceFilter, ...]

    def for_instance(self, folded: str) -> bool:
        if any(d.selects(folded) for d in self.denies):
            return False
        return self.base or any(a.selects(folded) for a in self.allows)


_NEVER: Final = _TypeDecision(False, False, False, (), ())

_Kind = Literal["visible", "reflect", "wide_area"]


class _SourceRules:
    """The policies that concern one (view, source VLAN) pair, indexed by service type."""

    __slots__ = ("allow_any", "allow_by_type", "deny_any", "deny_by_type", "hosts", "own", "seen")

    def __init__(self, own: bool, rules: Sequence[_Rule]) -> None:
        self.own = own
        self.allow_any: list[_Rule] = []
        self.deny_any: list[_Rule] = []
        self.allow_by_type: dict[str, list[_Rule]] = {}
        self.deny_by_type: dict[str, list[_Rule]] = {}
        #: the view may see the plain host names of the VLAN
        self.hosts = (
            own or any(r.policy.hosts and r.policy.action == "allow" for r in rules)
        ) and (not any(r.policy.hosts and r.policy.action == "deny" for r in rules))
        for rule in rules:
            deny = rule.policy.action == "deny"
            if ANY in rule.policy.services:
                (self.deny_any if deny else self.allow_any).append(rule)
            else:
                table = self.deny_by_type if deny else self.allow_by_type
                for stype in rule.policy.services:
                    table.setdefault(stype, []).append(rule)
        #: the view may see something of the VLAN: a service type or the host names
        self.seen = self.hosts or self._sees_a_type()

    def decide(self, stype: str, kind: _Kind) -> _TypeDecision:
        denies = self.deny_any + self.deny_by_type.get(stype, [])
        if any(r.instances.universal for r in denies):
            return _NEVER
        if kind == "reflect" and self.own:
            return _NEVER  # a VLAN's own traffic is never reflected back into it
        allows = self.allow_any + self.allow_by_type.get(stype, [])
        if kind == "reflect":
            allows = [r for r in allows if r.policy.reflect]
        elif kind == "wide_area":
            allows = [r for r in allows if r.policy.wide_area]
        base = (kind == "visible" and self.own) or any(r.instances.universal for r in allows)
        type_level = base or bool(allows)
        if not type_level:
            return _NEVER
        constant: bool | None = None
        if base and not denies:
            constant = True
        return _TypeDecision(
            type_level=type_level,
            constant=constant,
            base=base,
            allows=tuple(r.instances for r in allows if not r.instances.universal),
            denies=tuple(r.instances for r in denies),
        )

    def _sees_a_type(self) -> bool:
        """Some service type of this VLAN is visible (to this view) for some instance."""
        if any(r.instances.universal for r in self.deny_any):
            return False
        denied = {
            t for t, rules in self.deny_by_type.items() if any(r.instances.universal for r in rules)
        }
        if self.own or self.allow_any:
            return True
        return any(t not in denied for t in self.allow_by_type)


class _Decider:
    """Memoised answers for one view and one kind of question."""

    __slots__ = ("_instances", "_kind", "_sources", "_types")

    def __init__(self, sources: Mapping[str, _SourceRules], kind: _Kind) -> None:
        self._sources = sources
        self._kind = kind
        self._types: dict[tuple[str, str], _TypeDecision] = {}
        self._instances: dict[tuple[str, str, str], bool] = {}

    def decide(self, vlan: str, stype: str, instance: str | None) -> bool:
        key = (vlan, stype)
        decision = self._types.get(key)
        if decision is None:
            src = self._sources.get(vlan)
            decision = _NEVER if src is None else src.decide(service_type_text(stype), self._kind)
            if len(self._types) >= MEMO_MAX_TYPES:
                del self._types[next(iter(self._types))]
            self._types[key] = decision
        if instance is None:
            return decision.type_level
        if decision.constant is not None:
            return decision.constant
        ikey = (vlan, stype, instance)
        result = self._instances.get(ikey)
        if result is None:
            result = decision.for_instance(fold(instance))
            if len(self._instances) >= MEMO_MAX_INSTANCES:
                del self._instances[next(iter(self._instances))]
            self._instances[ikey] = result
        return result


class ViewPolicy:
    """What one view (a client VLAN, or ``"*"`` for the router) may see. Built by the engine.

    Immutable in effect: the only state that changes is the bounded memo of past answers.
    """

    __slots__ = (
        "_hosts", "_reflect", "_router", "_router_views", "_visible", "_wide_area", "name", "vlans",
    )  # fmt: skip

    name: str
    vlans: frozenset[str]

    def __init__(
        self,
        name: str,
        vlans: frozenset[str],
        sources: Mapping[str, _SourceRules],
        *,
        router_views: Sequence[ViewPolicy] = (),
    ) -> None:
        self.name = name
        self.vlans = vlans
        self._router = name == ANY
        self._hosts = {vlan: src.hosts for vlan, src in sources.items()}
        self._visible = _Decider(sources, "visible")
        self._reflect = _Decider(sources, "reflect")
        self._wide_area = _Decider(sources, "wide_area")
        self._router_views = tuple(router_views) if self._router else ()

    def __repr__(self) -> str:
        return f"ViewPolicy({self.name!r}, vlans={sorted(self.vlans)!r})"

    def service_visible(self, vlan: str, service_type: str, instance: str | None = None) -> bool:
        """May this view see ``service_type`` (an instance of it, if given) living on ``vlan``?"""
        if self._router:
            return True
        return self._visible.decide(vlan, service_type, instance)

    def hosts_visible(self, vlan: str) -> bool:
        """May this view see the plain host names (A/AAAA) of ``vlan``?

        True for the own VLAN unless a deny with ``hosts: true`` applies, and for other VLANs when
        an allow with ``hosts: true`` applies and no such deny. Host names that are the target of
        a visible SRV record are the caller's business.
        """
        if self._router:
            return True
        return self._hosts.get(vlan, False)

    def reflect_visible(self, vlan: str, service_type: str, instance: str | None = None) -> bool:
        """Should multicast for this service be reflected from ``vlan`` into this view?

        Only allow policies with ``reflect: true`` count; never into the VLAN it came from; the
        router view receives no reflection.
        """
        if self._router:
            return False
        return self._reflect.decide(vlan, service_type, instance)

    def wide_area_visible(self, vlan: str, service_type: str, instance: str | None = None) -> bool:
        """Is this service published into the global wide-area zone as this view sees it?

        Only allow policies with ``wideArea: true`` count, the own VLAN included (no default).
        For the router view: published for at least one VLAN view.
        """
        if self._router:
            return any(
                v.wide_area_visible(vlan, service_type, instance) for v in self._router_views
            )
        return self._wide_area.decide(vlan, service_type, instance)


class PolicyEngine:
    """The compiled policy set. Cheap to query; build a new one on every reload."""

    policies: tuple[ServicePolicy, ...]

    def __init__(self, policies: Sequence[ServicePolicy], vlans: Collection[str]) -> None:
        self.policies = tuple(policies)
        self.vlans: frozenset[str] = frozenset(vlans)
        problems = [
            f"{p.source[0]}: document {p.source[1]} ({p.name}): spec.{key}: unknown VLAN {v!r}; "
            f"fix: use one of {', '.join(sorted(self.vlans)) or 'the configured VLANs'}"
            for p in self.policies
            for key, names in (("from", p.from_vlans), ("to", p.to_vlans))
            for v in sorted(names)
            if v != ANY and v not in self.vlans
        ]
        if ANY in self.vlans:
            problems.append('"*" cannot be a VLAN name; fix: rename the VLAN')
        if problems:
            raise PolicyError(problems)
        rules = [_Rule(p, InstanceFilter.of(p)) for p in self.policies]
        # Bit i of from_mask[vlan] / to_mask[view] is set when rule i names that VLAN (or "*"), so
        # the rules of a (view, VLAN) pair are one AND, and pairs with the same rules share one
        # _SourceRules: building stays near-linear even for many VLANs and "*" policies.
        from_mask = dict.fromkeys(self.vlans, 0)
        to_mask = dict.fromkeys(self.vlans, 0)
        for i, rule in enumerate(rules):
            for masks, names in (
                (from_mask, rule.policy.from_vlans),
                (to_mask, rule.policy.to_vlans),
            ):
                for vlan in self.vlans if ANY in names else names:
                    masks[vlan] |= 1 << i
        shared: dict[tuple[int, bool], _SourceRules] = {}
        self._views: dict[str, ViewPolicy] = {}
        for view in sorted(self.vlans):
            sources: dict[str, _SourceRules] = {}
            for vlan in self.vlans:
                key = (from_mask[vlan] & to_mask[view], vlan == view)
                src = shared.get(key)
                if src is None:
                    src = shared[key] = _SourceRules(key[1], [rules[i] for i in _bits(key[0])])
                sources[vlan] = src
            seen = frozenset(v for v, src in sources.items() if src.seen)
            self._views[view] = ViewPolicy(view, seen, sources)
        self._views[ANY] = ViewPolicy(
            ANY, self.vlans, {}, router_views=[self._views[v] for v in sorted(self.vlans)]
        )

    def __repr__(self) -> str:
        return f"PolicyEngine({len(self.policies)} policies, vlans={sorted(self.vlans)!r})"

    def view(self, view: str) -> ViewPolicy:
        """The precomputed policy of ``view`` (a VLAN name, or ``"*"`` for the router)."""
        try:
            return self._views[view]
        except KeyError:
            raise KeyError(
                f"unknown view {view!r}; views are the VLANs {sorted(self.vlans)} and '*'"
            ) from None

    def explain(
        self,
        view: str,
        vlan: str,
        service: str,
        wide_area: tuple[dns.name.Name, str] | None = None,
    ) -> Explanation:
        """Which policies decide whether ``view`` sees ``service`` from ``vlan``, and why.

        ``service`` is a type (``"_ipp._tcp"``) or an instance (``"My Printer._ipp._tcp"``);
        ``wide_area``: the configured (zone, server), to say where it is published.
        Raises ValueError for an unknown view or VLAN or a malformed service name.
        """
        from .explain import explain  # only the HTTP surface and the CLI ask, after DNS

        return explain(self, view, vlan, service, wide_area)


def _bits(mask: int) -> Iterator[int]:
    """The indexes of the set bits of ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def default_engine(vlans: Collection[str]) -> PolicyEngine:
    """No policies: every VLAN sees only itself."""
    return PolicyEngine((), vlans)
