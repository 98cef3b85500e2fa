"""The list/watch protocol of the Kubernetes API as pure state transitions (no I/O).

:class:`WatchState` is fed what the API server sends: a complete list (its items and the list's
``metadata.resourceVersion``) and then watch events, one JSON object a line. It answers what
the shell (:mod:`.kubesource`) does next, as a :class:`Step`: nothing, apply a new policy set,
watch again from the last version seen, or list again (410 Gone: that version is too old).
It also says which objects need their status entry written, and builds the status patch and the
rejection Event. Time (an RFC 3339 timestamp) is passed in. One state follows one resource:
ServicePolicy or ServiceAnnouncement (``kind``); the announcement's CRD has no status
subresource, so its objects get rejection Events only.

The protocol (Kubernetes API Concepts, "Efficient detection of changes",
https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes):

* a list returns a ``resourceVersion``; a watch from it sends every change after it, as
  ``ADDED``, ``MODIFIED``, ``DELETED`` events carrying the object (whose
  ``metadata.resourceVersion`` is the version to resume from), ``BOOKMARK`` events (only a
  newer version, "Watch bookmarks") and ``ERROR`` events carrying a ``Status``;
* a watch from a version the server no longer keeps fails with 410 Gone, as an HTTP status or
  as an ``ERROR`` event with ``code: 410`` ("410 Gone responses"): the client lists again;
* resource versions are opaque strings: compared only for equality, never ordered.

A relist replaces the objects only once the whole list has arrived (the shell collects every
page first): until then, and when a list fails, the policies in force stay.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from .. import const
from ..errors import GatewayError
from .announcement import KIND as ANNOUNCEMENT_KIND
from .announcement import MAX_ANNOUNCEMENTS, ServiceAnnouncement
from .kubeobjects import ObjectKey, Verdict, object_key, validate_object
from .model import API_VERSION, KIND, MAX_POLICIES, ServicePolicy

#: the most accepted objects of each kind, and the fix when there are more
_LIMITS: Final = {
    KIND: (MAX_POLICIES, "merge policies that share from and to"),
    ANNOUNCEMENT_KIND: (MAX_ANNOUNCEMENTS, "announce fewer services from this gateway"),
}

CONDITION: Final = "Accepted"  # the Gateway API's condition for "this configuration is taken"
REASON_ACCEPTED: Final = "Accepted"
REASON_INVALID: Final = "Invalid"
COMPONENT: Final = "mdns-gateway"


class Step(Enum):
    """What the shell does after an event."""

    NOTHING = "nothing"  # a bookmark, a status-only change, an unchanged object
    APPLY = "apply"  # the policy set changed: build and swap the engine
    RESUME = "resume"  # the watch cannot go on: watch again from the last version seen
    RELIST = "relist"  # 410 Gone: list again


class KubeProtocolError(GatewayError):
    """What the API server sent is not what the protocol allows; ``reason`` is counted."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK or ERROR
    object: Mapping[str, Any]


def parse_event(line: bytes) -> WatchEvent:
    """One line of a watch stream. :class:`KubeProtocolError` if it is no watch event."""
    try:
        raw = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise KubeProtocolError("bad_json", str(exc)[:120]) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("object"), dict):
        raise KubeProtocolError("bad_event", "not {type, object}")
    kind = raw.get("type")
    if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"):
        raise KubeProtocolError("bad_event", f"unknown type {str(kind)[:40]!r}")
    return WatchEvent(kind, raw["object"])


def resource_version(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata")
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return rv if isinstance(rv, str) and rv else None


def parse_list(raw: object) -> tuple[list[Mapping[str, Any]], str, str | None]:
    """(items, resourceVersion, continue token) of one page of a list response."""
    if not isinstance(raw, dict) or not isinstance(raw.get("items"), list):
        raise KubeProtocolError("bad_list", "no items")
    rv = resource_version(raw)
    if rv is None:
        raise KubeProtocolError("bad_list", "no metadata.resourceVersion")
    meta = raw["metadata"]
    token = meta.get("continue") or None
    items: list[Mapping[str, Any]] = [item for item in raw["items"] if isinstance(item, dict)]
    return items, rv, token if isinstance(token, str) else None


@dataclass(slots=True)
class Tracked:
    """One object as last seen, validated."""

    key: ObjectKey
    uid: str
    generation: int
    resource_version: str
    verdict: Verdict
    gateways: list[Any]  # status.gateways as served: every gateway's entry
    evented: tuple[int, str] | None = None  # (generation, message) of the last rejection Event


@dataclass(slots=True)
class WatchState:
    """The objects seen so far, the version to resume from, and what changed."""

    vlans: Collection[str]
    node: str  # this gateway's key in status.gateways[]
    namespace: str  # the namespace watched; "*": all
    resource_version: str | None = None  # None: list first
    listed: bool = False  # a whole list has arrived once (then the policies are the API's)
    objects: dict[ObjectKey, Tracked] = field(default_factory=dict)
    ignored: int = 0  # objects past const.KUBE_MAX_OBJECTS, not tracked
    kind: str = KIND  # the resource followed: ServicePolicy or ServiceAnnouncement

    # -- list ------------------------------------------------------------------------------

    def replace(self, items: Sequence[Mapping[str, Any]], rv: str) -> bool:
        """A complete list arrived: it replaces every object. True if the accepted set changed."""
        before = self.accepted()
        old, self.objects = self.objects, {}
        for item in items:
            key = _key_of(item)
            self._upsert(item, None if key is None else old.get(key))
        self.resource_version = rv
        self.listed = True
        return self.accepted() != before

    # -- watch -----------------------------------------------------------------------------

    def apply(self, event: WatchEvent) -> Step:
        """One watch event. Raises :class:`KubeProtocolError` for an object without a name or
        version (the watch resumes from the last good version)."""
        obj = event.object
        if event.type == "ERROR":
            code = obj.get("code")
            if code == 410:
                self.resource_version = None
                return Step.RELIST
            return Step.RESUME
        rv = resource_version(obj)
        if rv is None:
            raise KubeProtocolError("bad_event", f"{event.type} without metadata.resourceVersion")
        if event.type == "BOOKMARK":
            self.resource_version = rv
            return Step.NOTHING
        key = _key_of(obj)
        if key is None:
            raise KubeProtocolError("bad_event", f"{event.type} of an object without a name")
        self.resource_version = rv
        if event.type == "DELETED":
            gone = self.objects.pop(key, None)
            return Step.APPLY if gone is not None and gone.verdict.accepted else Step.NOTHING
        old = self.objects.get(key)
        before = None if old is None else old.verdict.resource
        tracked = self._upsert(obj, old)
        after = None if tracked is None else tracked.verdict.resource
        return Step.APPLY if before != after else Step.NOTHING

    def _upsert(self, obj: Mapping[str, Any], old: Tracked | None) -> Tracked | None:
        key = _key_of(obj)
        if key is None:
            return None
        if old is None and len(self.objects) >= const.KUBE_MAX_OBJECTS:
            self.ignored += 1
            return None
        meta = obj["metadata"]
        uid = str(meta.get("uid", ""))
        generation = meta.get("generation")
        generation = generation if isinstance(generation, int) else 0
        status = obj.get("status")
        gateways = status.get("gateways") if isinstance(status, dict) else None
        gateways = gateways if isinstance(gateways, list) else []
        if old is not None and (old.uid, old.generation) == (uid, generation):
            verdict, evented = old.verdict, old.evented  # a status-only change: spec unchanged
        else:
            verdict, evented = self._validate(obj, key, generation), None
            if old is not None and old.uid == uid:
                evented = old.evented
        tracked = Tracked(key, uid, generation, resource_version(obj) or "", verdict, gateways)
        tracked.evented = evented
        self.objects[key] = tracked
        return tracked

    def _validate(self, obj: Mapping[str, Any], key: ObjectKey, generation: int) -> Verdict:
        accepted = sum(1 for t in self.objects.values() if t.verdict.accepted)
        limit, fix = _LIMITS[self.kind]
        if accepted >= limit:
            return Verdict(None, (f"(object): more than {limit} {self.kind} objects; fix: {fix}",))
        if obj.get("apiVersion") != API_VERSION or obj.get("kind") != self.kind:
            obj = {**obj, "apiVersion": API_VERSION, "kind": self.kind}  # items may omit them
        origin = f"kubernetes API, generation {generation}"
        return validate_object(obj, self.vlans, origin=origin)

    # -- results ---------------------------------------------------------------------------

    def accepted(self) -> list[ServicePolicy | ServiceAnnouncement]:
        """The accepted objects, by name (a stable order whatever order events came in)."""
        found = [r for t in self.objects.values() if (r := t.verdict.resource) is not None]
        return sorted(found, key=lambda r: r.name)

    def policies(self) -> list[ServicePolicy]:
        return [r for r in self.accepted() if isinstance(r, ServicePolicy)]

    def announcements(self) -> list[ServiceAnnouncement]:
        return [r for r in self.accepted() if isinstance(r, ServiceAnnouncement)]

    def rejected(self) -> list[Tracked]:
        return [t for k, t in sorted(self.objects.items()) if not t.verdict.accepted]

    def problems(self) -> str | None:
        """One line per problem of the rejected objects (namespace/name: field: reason; fix)."""
        lines = [f"{_label(t.key)}: {p}" for t in self.rejected() for p in t.verdict.problems]
        return "\n".join(lines) if lines else None

    # -- status ----------------------------------------------------------------------------

    def own_entry(self, tracked: Tracked) -> Mapping[str, Any] | None:
        for entry in tracked.gateways:
            if isinstance(entry, dict) and entry.get("nodeName") == self.node:
                return entry
        return None

    def desired_entry(self, tracked: Tracked, now: str) -> dict[str, Any]:
        """This gateway's status entry for the object (lastTransitionTime kept when the
        condition's status did not change)."""
        verdict = tracked.verdict
        accepted = verdict.accepted
        message = (
            f"accepted by the gateway on {self.node}" if accepted else "; ".join(verdict.problems)
        )
        if len(message) > const.KUBE_STATUS_MESSAGE_MAX:
            message = message[: const.KUBE_STATUS_MESSAGE_MAX - 3] + "..."
        status = "True" if accepted else "False"
        since = now
        previous = _condition(self.own_entry(tracked))
        if previous is not None and previous.get("status") == status:
            since = str(previous.get("lastTransitionTime") or now)
        condition = {
            "type": CONDITION,
            "status": status,
            "reason": REASON_ACCEPTED if accepted else REASON_INVALID,
            "message": message,
            "observedGeneration": tracked.generation,
            "lastTransitionTime": since,
        }
        return {"nodeName": self.node, "conditions": [condition]}

    def status_due(self, tracked: Tracked) -> bool:
        """Whether the served entry differs from what it should be (time aside); never for a
        kind without a status subresource (policies/crd-announcement.yaml has none)."""
        if self.kind != KIND:
            return False
        served = self.own_entry(tracked)
        return served != self.desired_entry(tracked, _time_of(served))

    def status_patch(self, tracked: Tracked, now: str) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386) of status.gateways: the other gateways' entries as
        served, this one's replaced. A merge patch replaces a list whole, so it carries the
        resourceVersion it was computed from: the server refuses it (409 Conflict) if another
        gateway wrote in between, and the caller reads the object and computes it again."""
        others = [
            e
            for e in tracked.gateways
            if not (isinstance(e, dict) and e.get("nodeName") == self.node)
        ]
        entries = [*others, self.desired_entry(tracked, now)]
        entries.sort(key=lambda e: str(e.get("nodeName")) if isinstance(e, dict) else "")
        return {
            "metadata": {"resourceVersion": tracked.resource_version},
            "status": {"gateways": entries},
        }

    def refresh(self, obj: Mapping[str, Any]) -> None:
        """The object as a status patch returned it, or as read after a 409: its version and
        status, for the next patch. Its spec is the watch's to apply (an engine is built for
        each change the watch brings), so nothing else is taken from it."""
        key = _key_of(obj)
        tracked = None if key is None else self.objects.get(key)
        rv = resource_version(obj)
        if tracked is None or rv is None:
            return
        status = obj.get("status")
        gateways = status.get("gateways") if isinstance(status, dict) else None
        tracked.resource_version = rv
        tracked.gateways = gateways if isinstance(gateways, list) else []

    # -- events ----------------------------------------------------------------------------

    def event_due(self, tracked: Tracked) -> bool:
        """A rejection not reported by an Event yet (one per generation and message)."""
        if tracked.verdict.accepted:
            return False
        return tracked.evented != (tracked.generation, "; ".join(tracked.verdict.problems))

    def rejection_event(self, tracked: Tracked, now: str) -> dict[str, Any]:
        """A core/v1 Event (type Warning) on the rejected object, from this gateway."""
        namespace, name = tracked.key
        message = self.desired_entry(tracked, now)["conditions"][0]["message"]
        tracked.evented = (tracked.generation, "; ".join(tracked.verdict.problems))
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{secrets.token_hex(8)}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": self.kind,
                "namespace": namespace,
                "name": name,
                "uid": tracked.uid,
                "resourceVersion": tracked.resource_version,
            },
            "reason": REASON_INVALID,
            "message": message,
            "type": "Warning",
            "source": {"component": COMPONENT, "host": self.node},
            "reportingComponent": f"mdnsgateway.io/{COMPONENT}",
            "reportingInstance": self.node,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }


def _key_of(obj: Mapping[str, Any]) -> ObjectKey | None:
    return object_key(obj)


def _label(key: ObjectKey) -> str:
    return f"{key[0]}/{key[1]}" if key[0] else key[1]


def _condition(entry: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if entry is None:
        return None
    for cond in entry.get("conditions") or ():
        if isinstance(cond, dict) and cond.get("type") == CONDITION:
            return cond
    return None


def _time_of(entry: Mapping[str, Any] | None) -> str:
    cond = _condition(entry)
    return str(cond.get("lastTransitionTime")) if cond is not None else ""


def backoff(failures: int, rand: float) -> float:
    """s before retry number ``failures`` (from 1) after the API failed: exponential from
    const.KUBE_BACKOFF_MIN to const.KUBE_BACKOFF_MAX, times a jitter in [0.5, 1) (``rand`` in
    [0, 1)) so gateways that lost the API together do not return together."""
    base = const.KUBE_BACKOFF_MIN * 2 ** min(max(failures - 1, 0), 16)
    return min(base, const.KUBE_BACKOFF_MAX) * (0.5 + rand / 2)
