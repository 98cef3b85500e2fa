"""The policy plan: reflect policies folded into bitmasks over VLAN indices.

Built once per policy change (never per packet) and memoised per (VLAN, type, instance), so a
packet's decision is a few integer operations per destination.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .. import const
from ..policy import ANY, PolicyEngine, ViewPolicy


def bits(mask: int) -> list[int]:
    """The indices of the set bits of ``mask``, ascending."""
    out = []
    i = 0
    while mask:
        if mask & 1:
            out.append(i)
        mask >>= 1
        i += 1
    return out


def sources_where(sources: int, keep: Callable[[int], bool]) -> int:
    """The bits ``d`` of the VLAN mask ``sources`` for which ``keep(d)`` holds."""
    mask = 0
    d = 0
    while sources:
        if sources & 1 and keep(d):
            mask |= 1 << d
        sources >>= 1
        d += 1
    return mask


class Plan:
    """The policy folded into bitmasks over VLAN indices; rebuilt on every policy change."""

    __slots__ = ("index", "names", "reach", "record_memo", "sources_for", "views")

    def __init__(self, names: Sequence[str], engine: PolicyEngine) -> None:
        self.names = tuple(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.views: list[ViewPolicy | None] = []
        for name in self.names:
            try:
                self.views.append(engine.view(name))
            except KeyError:
                self.views.append(None)
        # reach[S]: VLANs some reflect policy lets see something of S (a superset: denies and
        # instance globs are decided per record); sources_for[A]: VLANs A may receive from.
        n = len(self.names)
        self.reach = [0] * n
        for p in engine.policies:
            if p.action != "allow" or not p.reflect:
                continue
            froms = (
                range(n)
                if ANY in p.from_vlans
                else [self.index[v] for v in p.from_vlans if v in self.index]
            )
            tos = (
                range(n)
                if ANY in p.to_vlans
                else [self.index[v] for v in p.to_vlans if v in self.index]
            )
            for f in froms:
                for t in tos:
                    if f != t:
                        self.reach[f] |= 1 << t
        self.sources_for = [0] * n
        for f in range(n):
            for t in range(n):
                if self.reach[f] >> t & 1:
                    self.sources_for[t] |= 1 << f
        self.record_memo: dict[tuple[int, str, str | None], int] = {}

    def record_mask(self, src: int, stype: str, instance: str | None) -> int:
        """VLANs that may see (type, instance) living on VLAN ``src``."""
        key = (src, stype, instance)
        mask = self.record_memo.get(key)
        if mask is None:
            mask = 0
            vlan = self.names[src]
            reach = self.reach[src]
            for d, view in enumerate(self.views):
                if (
                    reach >> d & 1
                    and view is not None
                    and view.reflect_visible(vlan, stype, instance)
                ):
                    mask |= 1 << d
            if len(self.record_memo) >= const.REFLECT_MEMO_MAX:
                self.record_memo.clear()
            self.record_memo[key] = mask
        return mask

    def question_mask(self, asker: int, stype: str, instance: str | None) -> int:
        """VLANs whose (type, instance) the VLAN ``asker`` may see."""
        return sources_where(
            self.sources_for[asker],
            lambda d: bool(self.record_mask(d, stype, instance) >> asker & 1),
        )
