"""Which instances a policy selects: its ``instances`` globs, compiled once."""

from __future__ import annotations

import fnmatch
import functools
import re
import unicodedata
from dataclasses import dataclass

from .. import const
from .model import ANY, ServicePolicy


def fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


@functools.lru_cache(maxsize=const.POLICY_GLOB_CACHE_MAX)
def compile_globs(globs: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex for a glob list; None when the list is empty."""
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(fold(g))})" for g in globs))


@dataclass(frozen=True, slots=True)
class InstanceFilter:
    """The instances a policy applies to: an allow glob matches and no deny glob does."""

    allow: re.Pattern[str] | None  # None: every instance
    deny: re.Pattern[str] | None  # None: no exceptions

    @classmethod
    def of(cls, policy: ServicePolicy) -> InstanceFilter:
        allow = None if ANY in policy.instances_allow else compile_globs(policy.instances_allow)
        return cls(allow, compile_globs(policy.instances_deny))

    @property
    def universal(self) -> bool:
        return self.allow is None and self.deny is None

    def selects(self, folded: str) -> bool:
        if self.allow is not None and self.allow.match(folded) is None:
            return False
        return self.deny is None or self.deny.match(folded) is None
