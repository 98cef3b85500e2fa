"""The Kubernetes policy source's counters (``mdns_gateway_kube_*``), registered by
``bridge/app.py`` when ``policies: {kubernetes: ...}`` is configured."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from ..metrics import NS, counter, gauge
from .kubesource import KubePolicySource


class KubeCollector(Collector):
    def __init__(self, source: KubePolicySource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        s = self.source
        states = s.states()
        yield gauge(
            f"{NS}_kube_synced",
            "1 once a whole list of every resource watched has arrived",
            1.0 if s.not_ready() is None else 0.0,
        )
        rejected = sum(len(st.rejected()) for st in states)
        yield gauge(
            f"{NS}_kube_objects",
            "ServicePolicy and ServiceAnnouncement objects by verdict",
            [
                ("accepted", sum(len(st.objects) for st in states) - rejected),
                ("rejected", rejected),
            ],
            ["verdict"],
        )
        for name, doc, value in (
            ("lists", "Complete lists of a resource (every page)", s.lists),
            ("relists", "Lists forced by 410 Gone (the watch's version was too old)", s.relists),
            ("watches", "Watch requests the API server accepted", s.watches),
            ("engine_builds", "Policy engines built from the objects and put in force", s.builds),
            ("status_writes", "Status entries written (servicepolicies/status)", s.status_writes),
            ("status_conflicts", "Status patches refused with 409 Conflict", s.status_conflicts),
            ("events_created", "Warning Events posted for rejected objects", s.events_created),
            (
                "objects_ignored",
                "Objects beyond the tracking bound (per resource), ignored",
                sum(st.ignored for st in states),
            ),
        ):
            yield counter(f"{NS}_kube_{name}", doc, value)
        yield counter(
            f"{NS}_kube_watch_events",
            "Watch events received by type",
            (
                (kind, s.events[kind])
                for kind in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")
            ),
            ["type"],
        )
        yield counter(
            f"{NS}_kube_errors",
            "Failures talking to the API by reason (connection, timeout, unauthorized, "
            "forbidden, http_<code>, bad_json, bad_event, bad_list, too_large, "
            "event_too_large, watch_error, empty_watch, config, status, engine)",
            s.errors,
            ["reason"],
        )
