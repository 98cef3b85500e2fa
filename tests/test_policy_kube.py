"""Policies from the Kubernetes API: the pure list/watch logic (bridge/policy/kubewatch.py) and
the asyncio source (bridge/policy/kubesource.py) against the stand-in API server
(tests/support/kubeapi.py, whose docstring lists the API behaviours it reproduces) on loopback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bridge import const
from bridge.policy import PolicyEngine, kubesource
from bridge.policy.kubemetrics import KubeCollector
from bridge.policy.kubesource import KubePolicySource
from bridge.policy.kubewatch import (
    KubeProtocolError,
    Step,
    WatchEvent,
    WatchState,
    backoff,
    parse_event,
    parse_list,
)
from tests.support.cli import ROOT
from tests.support.kubeapi import KubeApi, merge_patch, write_kubeconfig

VLANS = frozenset({"trusted", "iot", "guest"})
NS = "lab"
API = "mdnsgateway.io/v1alpha1"


def obj(
    name: str, rv: int = 1, generation: int = 1, uid: str = "u1", **spec: Any
) -> dict[str, Any]:
    body = {"from": ["iot"], "to": ["trusted"], "services": ["_ipp._tcp"], **spec}
    meta = {"name": name, "namespace": NS, "uid": uid, "generation": generation,
            "resourceVersion": str(rv)}  # fmt: skip
    return {"apiVersion": API, "kind": "ServicePolicy", "metadata": meta, "spec": body}


def state(node: str = "r1") -> WatchState:
    return WatchState(VLANS, node, NS)


# --- the pure logic --------------------------------------------------------------------------


def test_list_then_events_change_the_policies_and_the_version() -> None:
    s = state()
    assert s.replace([obj("a", 5), obj("b", 6, uid="u2", services=["_x._tcp", "Bad"])], "10")
    assert (s.resource_version, s.listed) == ("10", True)
    assert [p.name for p in s.policies()] == ["lab/a"]  # b is rejected alone
    problems = s.problems()
    assert problems is not None and problems.startswith("lab/b: spec.services[1]: 'Bad' is not")
    assert s.apply(WatchEvent("ADDED", obj("c", 11, uid="u3"))) is Step.APPLY
    assert s.resource_version == "11"
    changed = obj("a", 12, generation=2, **{"to": ["guest"]})
    assert s.apply(WatchEvent("MODIFIED", changed)) is Step.APPLY
    assert s.policies()[0].to_vlans == frozenset({"guest"})
    assert s.apply(WatchEvent("DELETED", obj("c", 13, uid="u3"))) is Step.APPLY
    assert s.apply(WatchEvent("DELETED", obj("b", 14, uid="u2"))) is Step.NOTHING  # was rejected
    assert [p.name for p in s.policies()] == ["lab/a"] and s.resource_version == "14"


def test_status_only_changes_and_bookmarks_apply_nothing() -> None:
    s = state()
    s.replace([obj("a", 5)], "5")
    with_status = obj("a", 6)
    with_status["status"] = {"gateways": [{"nodeName": "r2", "conditions": []}]}
    assert s.apply(WatchEvent("MODIFIED", with_status)) is Step.NOTHING
    assert s.objects[(NS, "a")].gateways == with_status["status"]["gateways"]
    mark = {"kind": "ServicePolicy", "metadata": {"resourceVersion": "99"}}
    assert s.apply(WatchEvent("BOOKMARK", mark)) is Step.NOTHING and s.resource_version == "99"


def test_410_relists_other_errors_resume_and_nameless_objects_are_protocol_errors() -> None:
    s = state()
    s.replace([], "5")
    gone = {"kind": "Status", "code": 410, "reason": "Expired"}
    assert s.apply(WatchEvent("ERROR", gone)) is Step.RELIST and s.resource_version is None
    s.resource_version = "5"
    assert s.apply(WatchEvent("ERROR", {"kind": "Status", "code": 500})) is Step.RESUME
    assert s.resource_version == "5"
    with pytest.raises(KubeProtocolError):
        s.apply(WatchEvent("ADDED", {"metadata": {"resourceVersion": "6"}}))


def test_a_relist_keeps_what_it_lists_and_drops_what_it_does_not() -> None:
    s = state()
    s.replace([obj("a", 1), obj("b", 2, uid="u2")], "2")
    assert s.replace([obj("a", 1)], "9")  # b went while the watch was away
    assert [p.name for p in s.policies()] == ["lab/a"]
    assert not s.replace([obj("a", 1)], "10")  # nothing changed: no new engine


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"[1]", "bad_event"),
        (b'{"type": "SYNC", "object": {}}', "bad_event"),
        (b"[" * 100_000 + b"]" * 100_000, "bad_json"),
    ],
    ids=["not-json", "not-a-mapping", "unknown-type", "nested-too-deep"],
)
def test_parse_event_rejects_what_is_no_watch_event(line: bytes, reason: str) -> None:
    with pytest.raises(KubeProtocolError) as exc:
        parse_event(line)
    assert exc.value.reason == reason


def test_parse_list_needs_items_and_a_version() -> None:
    page = {"metadata": {"resourceVersion": "7", "continue": "abc"}, "items": [obj("a"), 3]}
    items, rv, token = parse_list(page)
    assert (len(items), rv, token) == (1, "7", "abc")
    with pytest.raises(KubeProtocolError):
        parse_list({"metadata": {}, "items": []})


def test_status_entry_keeps_other_gateways_and_the_transition_time() -> None:
    s = state("r1")
    other = {"nodeName": "r2", "conditions": [{"type": "Accepted", "status": "True"}]}
    item = obj("a", 5)
    item["status"] = {"gateways": [other]}
    s.replace([item], "5")
    tracked = s.objects[(NS, "a")]
    assert s.status_due(tracked)
    patch = s.status_patch(tracked, "2026-12-02T03:00:00Z")
    assert patch["metadata"] == {"resourceVersion": "5"}  # the precondition: 409 if stale
    entries = patch["status"]["gateways"]
    assert [e["nodeName"] for e in entries] == ["r1", "r2"] and entries[1] == other
    cond = entries[0]["conditions"][0]
    assert cond == {
        "type": "Accepted",
        "status": "True",
        "reason": "Accepted",
        "message": "accepted by the gateway on r1",
        "observedGeneration": 1,
        "lastTransitionTime": "2026-12-02T03:00:00Z",
    }
    # served back: nothing due; a new generation keeps the time while Accepted stays True
    served = merge_patch(item, patch)
    served["metadata"]["resourceVersion"] = "6"
    s.apply(WatchEvent("MODIFIED", served))
    assert not s.status_due(s.objects[(NS, "a")])
    newer = merge_patch(served, {"metadata": {"generation": 2, "resourceVersion": "7"}})
    s.apply(WatchEvent("MODIFIED", newer))
    tracked = s.objects[(NS, "a")]
    assert s.status_due(tracked)
    cond = s.desired_entry(tracked, "2026-12-02T04:00:00Z")["conditions"][0]
    assert (cond["observedGeneration"], cond["lastTransitionTime"]) == (2, "2026-12-02T03:00:00Z")


def test_a_rejected_object_gets_one_event_per_generation() -> None:
    s = state("r1")
    s.replace([obj("a", 5, **{"from": ["lab"]})], "5")
    tracked = s.objects[(NS, "a")]
    entry = s.desired_entry(tracked, "t")
    cond = entry["conditions"][0]
    assert (cond["status"], cond["reason"]) == ("False", "Invalid")
    assert cond["message"].startswith("spec.from[0]: unknown VLAN 'lab'")
    assert s.event_due(tracked)
    event = s.rejection_event(tracked, "t")
    assert event["involvedObject"]["uid"] == "u1" and event["type"] == "Warning"
    assert event["metadata"]["namespace"] == NS and event["message"] == cond["message"]
    assert not s.event_due(tracked)
    s.apply(WatchEvent("MODIFIED", obj("a", 6)))  # status-only or a relist: no second event
    s.apply(WatchEvent("MODIFIED", obj("a", 7, generation=2, **{"from": ["lab2"]})))
    assert s.event_due(s.objects[(NS, "a")])


def test_objects_past_the_bound_are_counted_not_tracked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(const, "KUBE_MAX_OBJECTS", 2)
    s = state()
    s.replace([obj(f"p{i}", i, uid=f"u{i}") for i in range(4)], "9")
    assert len(s.objects) == 2 and s.ignored == 2


def test_backoff_grows_jittered_and_bounded() -> None:
    assert backoff(1, 0.0) == const.KUBE_BACKOFF_MIN / 2
    assert backoff(2, 0.999) < 2 * const.KUBE_BACKOFF_MIN
    assert backoff(100, 0.0) == const.KUBE_BACKOFF_MAX / 2
    assert backoff(100, 0.9999) <= const.KUBE_BACKOFF_MAX


# --- the source against the stand-in API server ---------------------------------------------


def manifest(name: str, **spec: Any) -> dict[str, Any]:
    body = {"from": ["iot"], "to": ["trusted"], "services": ["_ipp._tcp"], **spec}
    return {"apiVersion": API, "kind": "ServicePolicy",
            "metadata": {"name": name, "namespace": NS}, "spec": body}  # fmt: skip


class Sink:
    """What the source handed on: the engines and problems, in order."""

    def __init__(self) -> None:
        self.engines: list[tuple[PolicyEngine, str | None]] = []

    def __call__(self, engine: PolicyEngine, problems: str | None) -> None:
        self.engines.append((engine, problems))

    def names(self) -> list[str] | None:
        return [p.name for p in self.engines[-1][0].policies] if self.engines else None


async def until(check: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll ``check`` until true, failing after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        await asyncio.sleep(0.02)


def with_api(scenario: Callable[[KubeApi], Coroutine[Any, Any, None]]) -> None:
    """Run ``scenario(api)`` on a fresh event loop with a stand-in API server on loopback
    (a test's whole time bounded by pytest-timeout)."""

    async def main() -> None:
        server = KubeApi(bookmark_interval=0.2)
        await server.start()
        try:
            await scenario(server)
        finally:
            await server.stop()

    asyncio.run(main())


def source(
    api: KubeApi, tmp_path: Path, sink: Sink, node: str = "r1", token: str = "lab-token"
) -> KubePolicySource:
    kc = write_kubeconfig(tmp_path / f"kc-{node}", f"http://127.0.0.1:{api.port}", token)
    return KubePolicySource(NS, node, kc, VLANS, sink, env={}, rand=lambda: 0.0)


async def printers_listed(api: KubeApi, tmp_path: Path) -> tuple[Sink, KubePolicySource]:
    """A started source against one ServicePolicy, once it has the policy in force and has
    written its status entry (the caller stops it)."""
    api.put(manifest("printers"))
    sink = Sink()
    src = source(api, tmp_path, sink)
    src.start()
    try:
        await until(lambda: sink.names() == ["lab/printers"])
        await until(lambda: api.gateway_entry(NS, "printers", "r1") is not None)
    except BaseException:
        await src.stop()
        raise
    return sink, src


def test_list_watch_add_modify_delete(tmp_path: Path) -> None:
    async def scenario(api: KubeApi) -> None:
        api.put(manifest("printers"))
        api.put({**manifest("elsewhere"), "metadata": {"name": "x", "namespace": "other"}})
        sink = Sink()
        src = source(api, tmp_path, sink)
        assert src.not_ready() is not None
        src.start()
        try:
            await until(lambda: sink.names() == ["lab/printers"])
            assert src.not_ready() is None
            api.put(manifest("cast", services=["_googlecast._tcp"]))
            await until(lambda: sink.names() == ["lab/cast", "lab/printers"], 2.0)
            api.put(manifest("cast", services=["_airplay._tcp"]))
            await until(lambda: sink.engines[-1][0].policies[0].services == {"_airplay._tcp"}, 2.0)
            api.delete(NS, "printers")
            await until(lambda: sink.names() == ["lab/cast"], 2.0)
            watch = api.watch_requests()[0]
            assert watch["allowWatchBookmarks"] == "true" and watch["resourceVersion"]
            await until(lambda: src.events["BOOKMARK"] > 0)
            assert api.list_requests() == 1 and src.relists == 0
            # every object got this gateway's entry, Accepted
            await until(lambda: api.gateway_entry(NS, "cast", "r1") is not None)
            entry = api.gateway_entry(NS, "cast", "r1")
            assert entry is not None and entry["conditions"][0]["status"] == "True"
            assert entry["conditions"][0]["observedGeneration"] == 2
        finally:
            await src.stop()

    with_api(scenario)


def test_a_dropped_watch_resumes_from_the_last_version_without_a_relist(tmp_path: Path) -> None:
    async def scenario(api: KubeApi) -> None:
        sink, src = await printers_listed(api, tmp_path)
        try:
            await until(lambda: len(api.watch_requests()) == 1)
            await until(lambda: src.state.resource_version == str(api.rv))
            seen = src.state.resource_version
            api.drop_watches()
            await until(lambda: len(api.watch_requests()) == 2)
            assert api.watch_requests()[1]["resourceVersion"] == seen
            api.put(manifest("cast", services=["_googlecast._tcp"]))  # seen by the resumed watch
            await until(lambda: sink.names() == ["lab/cast", "lab/printers"], 2.0)
            assert api.list_requests() == 1 and src.relists == 0
        finally:
            await src.stop()

    with_api(scenario)


@pytest.mark.parametrize("as_http", [False, True])
def test_410_gone_relists(tmp_path: Path, as_http: bool) -> None:
    async def scenario(api: KubeApi) -> None:
        api.gone_as_http = as_http
        sink, src = await printers_listed(api, tmp_path)
        try:
            await until(lambda: src.state.resource_version == str(api.rv))
            # while the watch is away: a change, then the history compacted
            api.drop_watches()
            api.delete(NS, "printers")
            api.put(manifest("cast", services=["_googlecast._tcp"]))
            api.compact()
            await until(lambda: sink.names() == ["lab/cast"], 5.0)
            assert src.relists == 1 and api.list_requests() == 2
            assert src.events["ERROR"] == (0 if as_http else 1)
        finally:
            await src.stop()

    with_api(scenario)


def test_api_down_at_start_default_policy_and_not_ready_then_up(tmp_path: Path) -> None:
    async def scenario(api: KubeApi) -> None:
        api.put(manifest("printers"))
        await api.stop()
        sink = Sink()
        src = source(api, tmp_path, sink)
        src.start()
        try:
            await until(lambda: src.errors["connection"] >= 2)
            reason = src.not_ready()
            assert reason is not None and "waiting for the first list" in reason
            assert "the default policy is in force" in reason and "Connect" in reason
            assert sink.engines == []  # nothing but the default until the first list
            await api.start()
            await until(lambda: sink.names() == ["lab/printers"], 10.0)
            assert src.not_ready() is None
        finally:
            await src.stop()

    with_api(scenario)


def test_an_invalid_object_is_rejected_alone_with_status_and_event(tmp_path: Path) -> None:
    async def scenario(api: KubeApi) -> None:
        api.put(manifest("printers"))
        api.put(manifest("cast", **{"from": ["iot", "lab"]}))
        sink = Sink()
        src = source(api, tmp_path, sink)
        src.start()
        try:
            await until(lambda: sink.names() == ["lab/printers"])
            problems = sink.engines[-1][1]
            assert problems is not None and problems.startswith("lab/cast: spec.from[1]: unknown")
            await until(lambda: api.gateway_entry(NS, "cast", "r1") is not None)
            cond = api.gateway_entry(NS, "cast", "r1")["conditions"][0]  # type: ignore[index]
            assert (cond["status"], cond["reason"]) == ("False", "Invalid")
            assert cond["message"].startswith("spec.from[1]: unknown VLAN 'lab'")
            await until(lambda: len(api.posted_events) == 1)
            event = api.posted_events[0]
            assert event["involvedObject"]["name"] == "cast" and "spec.from[1]" in event["message"]
            # fixed: accepted, the condition flips, no second event
            api.put(manifest("cast", **{"from": ["iot"]}))
            await until(lambda: sink.names() == ["lab/cast", "lab/printers"], 2.0)
            await until(
                lambda: api.gateway_entry(NS, "cast", "r1")["conditions"][0]["status"] == "True"  # type: ignore[index]
            )
            assert sink.engines[-1][1] is None and len(api.posted_events) == 1
            assert src.status_writes >= 3
        finally:
            await src.stop()

    with_api(scenario)


def test_two_gateways_keep_their_own_status_entries(tmp_path: Path) -> None:
    async def scenario(api: KubeApi) -> None:
        api.put(manifest("printers"))
        sinks = Sink(), Sink()
        sources = [source(api, tmp_path, sinks[i], node=f"router-{i}") for i in range(2)]
        for src in sources:
            src.start()
        try:

            def both() -> bool:
                return all(api.gateway_entry(NS, "printers", f"router-{i}") for i in range(2))

            await until(both)
            api.put(manifest("printers", services=["_ipp._tcp", "_ipps._tcp"]))  # generation 2

            def observed() -> bool:
                entries = [api.gateway_entry(NS, "printers", f"router-{i}") for i in range(2)]
                return all(e and e["conditions"][0]["observedGeneration"] == 2 for e in entries)

            await until(observed)
            gateways = api.objects[(NS, "printers")]["status"]["gateways"]
            assert [g["nodeName"] for g in gateways] == ["router-0", "router-1"]
        finally:
            for src in sources:
                await src.stop()

    with_api(scenario)


def test_a_wrong_token_is_named_and_retried(tmp_path: Path) -> None:
    async def scenario(api: KubeApi) -> None:
        sink = Sink()
        src = source(api, tmp_path, sink, token="wrong")
        src.start()
        try:
            await until(lambda: src.errors["unauthorized"] >= 1)
            reason = src.not_ready()
            assert reason is not None and "HTTP 401" in reason and "service account" in reason
        finally:
            await src.stop()

    with_api(scenario)


def test_stand_in_merge_patch_is_rfc_7386() -> None:
    target = {"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]}
    patch = {"b": {"c": None, "e": 4}, "l": [3], "a": None}
    assert merge_patch(target, patch) == {"b": {"d": 3, "e": 4}, "l": [3]}
    assert json.dumps(target) == '{"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]}'


def test_the_status_written_validates_against_the_crd_status_schema() -> None:
    crd = yaml.safe_load((ROOT / "policies" / "crd.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    s = state("router-1")
    item = obj("a", 5, **{"from": ["lab"]})
    item["status"] = {"gateways": [{"nodeName": "router-0", "conditions": []}]}
    s.replace([item, obj("b", 6, uid="u2")], "6")
    for tracked in s.objects.values():
        patch = s.status_patch(tracked, "2026-12-02T03:00:00Z")
        errors = [e.message for e in validator.iter_errors(patch["status"])]
        assert errors == [], errors
        event = s.rejection_event(tracked, "2026-12-02T03:00:00Z")
        assert event["involvedObject"]["kind"] == "ServicePolicy"


# --- ServiceAnnouncement objects: the same list/watch, their own state -----------------------


def announcement(name: str, rv: int = 1, uid: str = "a1", **spec: Any) -> dict[str, Any]:
    body = {"vlans": ["trusted"], "instance": "Office Printer", "type": "_ipp._tcp",
            "host": "printer", "addresses": ["10.10.0.50"], "port": 631, **spec}  # fmt: skip
    meta = {"name": name, "namespace": NS, "uid": uid, "generation": 1, "resourceVersion": str(rv)}
    return {"apiVersion": API, "kind": "ServiceAnnouncement", "metadata": meta, "spec": body}


def test_announcements_are_validated_as_files_are_and_have_no_status() -> None:
    s = WatchState(VLANS, "r1", NS, kind="ServiceAnnouncement")
    bad = announcement("bad", 6, uid="a2", port=70000)
    del bad["apiVersion"], bad["kind"]  # a list's items may omit them
    assert s.replace([announcement("printer", 5), bad], "10")
    assert [(a.name, a.port) for a in s.announcements()] == [("lab/printer", 631)]
    assert s.policies() == []
    problems = s.problems()
    assert problems is not None and problems.startswith("lab/bad: spec.port:")
    rejected = s.objects[(NS, "bad")]
    assert not s.status_due(rejected) and not s.status_due(s.objects[(NS, "printer")])
    assert s.event_due(rejected)
    event = s.rejection_event(rejected, "2026-12-02T05:00:00Z")
    assert event["involvedObject"]["kind"] == "ServiceAnnouncement"
    assert not s.event_due(rejected)
    moved = announcement("printer", 11, port=632)
    moved["metadata"]["generation"] = 2
    assert s.apply(WatchEvent("MODIFIED", moved)) is Step.APPLY
    assert s.announcements()[0].port == 632
    assert s.apply(WatchEvent("DELETED", bad)) is Step.NOTHING  # it was rejected


class AnnouncementSink:
    """The announcement sets the source handed on, in order."""

    def __init__(self) -> None:
        self.sets: list[list[tuple[str, int]]] = []

    def __call__(self, announcements: Any) -> None:
        self.sets.append([(a.name, a.port) for a in announcements])

    def last(self) -> list[tuple[str, int]] | None:
        return self.sets[-1] if self.sets else None


def test_announcements_listed_watched_and_an_invalid_one_rejected_alone(tmp_path: Path) -> None:
    async def scenario(api: KubeApi) -> None:
        ann = "serviceannouncements"
        spec = announcement("printer")["spec"]

        def put(name: str, **change: Any) -> None:
            api.put({"metadata": {"name": name, "namespace": NS}, "spec": {**spec, **change}}, ann)

        put("printer")
        api.put(manifest("printers"))
        sink, announced = Sink(), AnnouncementSink()
        kc = write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{api.port}")
        src = KubePolicySource(
            NS, "r1", kc, VLANS, sink, env={}, rand=lambda: 0.0, on_announcements=announced
        )
        waiting = src.not_ready()
        assert waiting is not None and "ServiceAnnouncement" in waiting
        src.start()
        try:
            await until(lambda: announced.last() == [("lab/printer", 631)])
            await until(lambda: sink.names() == ["lab/printers"])
            await until(lambda: src.not_ready() is None)
            # added, modified, deleted: each reaches the callback
            put("nas", instance="NAS", host="nas", port=445)
            await until(lambda: announced.last() == [("lab/nas", 445), ("lab/printer", 631)])
            put("printer", port=632)
            await until(lambda: announced.last() == [("lab/nas", 445), ("lab/printer", 632)])
            api.delete(NS, "nas", ann)
            await until(lambda: announced.last() == [("lab/printer", 632)])
            # an invalid one is rejected alone, with a Warning Event; the others stay
            put("broken", port=70000)
            await until(lambda: len(api.posted_events) == 1)
            event = api.posted_events[0]
            assert event["type"] == "Warning" and event["reason"] == "Invalid"
            assert event["involvedObject"]["kind"] == "ServiceAnnouncement"
            assert event["involvedObject"]["name"] == "broken"
            assert "spec.port" in event["message"]
            assert announced.last() == [("lab/printer", 632)]
            assert sink.names() == ["lab/printers"]  # the policies are not touched
            samples = {
                (m.name, tuple(sorted(x.labels.items()))): x.value
                for m in KubeCollector(src).collect()
                for x in m.samples
            }
            assert samples[("mdns_gateway_kube_objects", (("verdict", "rejected"),))] == 1
            assert samples[("mdns_gateway_kube_objects", (("verdict", "accepted"),))] == 2
            assert samples[("mdns_gateway_kube_synced", ())] == 1
            # while the watches are away: a change, then the history compacted (410 Gone)
            api.drop_watches()
            api.delete(NS, "broken", ann)
            put("printer", port=633)
            api.compact()
            await until(lambda: announced.last() == [("lab/printer", 633)])
            assert api.list_requests(ann) == 2 and src.relists >= 1
            # no status subresource for announcements: never patched
            patched = [p for m, p, _ in api.requests if m == "PATCH" and f"/{ann}/" in p]
            assert patched == []
        finally:
            await src.stop()

    with_api(scenario)


def test_a_bug_in_the_list_or_the_status_writer_is_counted_logged_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault injection: the first list parse and the first status write raise what no handler
    expects (a bug). Neither task ends: each failure is counted as ``internal``, its traceback
    logged once, and the list and the status write are retried after the backoff."""
    real_parse, real_write = kubesource.parse_list, KubePolicySource._write_status
    calls = {"parse": 0, "write": 0}

    def parse_once_broken(doc: Any) -> Any:
        calls["parse"] += 1
        if calls["parse"] == 1:
            raise RuntimeError("injected parse bug")
        return real_parse(doc)

    async def write_once_broken(self: KubePolicySource, res: Any, key: Any) -> None:
        calls["write"] += 1
        if calls["write"] == 1:
            raise KeyError("injected status bug")
        await real_write(self, res, key)

    monkeypatch.setattr(kubesource, "parse_list", parse_once_broken)
    monkeypatch.setattr(KubePolicySource, "_write_status", write_once_broken)

    async def scenario(api: KubeApi) -> None:
        sink, src = await printers_listed(api, tmp_path)
        try:
            assert src.errors["internal"] == 2 and src.errors["status"] == 1
            assert api.list_requests() == 2  # the broken list was listed again
            api.put(manifest("cast", services=["_googlecast._tcp"]))  # the watch still runs
            await until(lambda: sink.names() == ["lab/cast", "lab/printers"], 5.0)
        finally:
            await src.stop()

    with caplog.at_level(logging.ERROR, logger="bridge.policy.kubesource"):
        with_api(scenario)
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert [str(r.exc_info[1]) for r in tracebacks if r.exc_info] == [
        "injected parse bug",
        "'injected status bug'",
    ]


def test_every_namespace_lists_all_and_writes_status_where_each_object_lives(
    tmp_path: Path,
) -> None:
    """``namespace: "*"`` (overlays/every-namespace): the cluster-wide collection is listed and
    watched, and each object's status and Event go to its own namespace."""

    async def scenario(api: KubeApi) -> None:
        api.put(manifest("printers"))
        api.put(
            {**manifest("bad", to=["nowhere"]), "metadata": {"name": "bad", "namespace": "team"}}
        )
        sink = Sink()
        kc = write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{api.port}")
        src = KubePolicySource("*", "r1", kc, VLANS, sink, env={}, rand=lambda: 0.0)
        src.start()
        try:
            await until(lambda: sink.names() == ["lab/printers"])
            api.put({**manifest("cast"), "metadata": {"name": "cast", "namespace": "team"}})
            await until(lambda: sink.names() == ["lab/printers", "team/cast"], 5.0)
            await until(lambda: api.gateway_entry("team", "bad", "r1") is not None)
            await until(lambda: api.gateway_entry(NS, "printers", "r1") is not None)
            bad = api.gateway_entry("team", "bad", "r1")
            assert bad is not None and bad["conditions"][0]["status"] == "False"
            paths = {path for _, path, _ in api.requests}
            assert "/apis/mdnsgateway.io/v1alpha1/servicepolicies" in paths
            assert not any("/namespaces/" in p for p in paths if p.endswith("/servicepolicies"))
            assert "/api/v1/namespaces/team/events" in paths
        finally:
            await src.stop()

    with_api(scenario)
