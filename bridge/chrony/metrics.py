"""mdns_gateway_chrony_*: the chrony service's state, read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .health import ServerState, Tracking, synchronised

if TYPE_CHECKING:
    from .service import ChronyService

NS = "mdns_gateway_chrony"


class ChronyCollector:
    """mdns_gateway_chrony_*: read from the service's state at scrape time."""

    def __init__(self, service: ChronyService) -> None:
        self.svc = service

    def collect(self) -> Iterator[Metric]:
        states = list(self.svc.states.values())

        def gauge(
            name: str, doc: str, value: Callable[[ServerState], float | None]
        ) -> GaugeMetricFamily:
            g = GaugeMetricFamily(f"{NS}_{name}", doc, labels=["server"])
            for st in states:
                v = value(st)
                if v is not None:
                    g.add_metric([st.server.name], v)
            return g

        def tracked(fn: Callable[[Tracking], float]) -> Callable[[ServerState], float | None]:
            return lambda st: fn(st.tracking) if st.tracking is not None else None

        yield gauge(
            "up",
            "1 if chronyd answered the last poll",
            lambda st: 0.0 if st.tracking is None else 1.0,
        )
        yield gauge(
            "healthy",
            "1 if the server passes the health rule (synchronised, "
            "stratum < 16, |offset| within the bound)",
            lambda st: 1.0 if st.health.healthy else 0.0,
        )
        yield gauge(
            "advertised",
            "1 if the server's NTP service is advertised (mDNS and DNS)",
            lambda st: 1.0 if st.advertised and self.svc.advertised_on(st.server.name) else 0.0,
        )
        yield gauge(
            "synchronised",
            "1 if chronyd is synchronised and follows a reference",
            lambda st: (
                1.0 if st.tracking is not None and synchronised(st.tracking, st.sources) else 0.0
            ),
        )
        yield gauge("stratum", "NTP stratum of chronyd", tracked(lambda t: float(t.stratum)))
        # the configured bound beside the offset, so that an alert compares the two without
        # repeating the config (deploy/prometheus/rules.yaml, MdnsGatewayClockSkewDetected)
        bound = self.svc.config.max_offset_seconds
        yield gauge(
            "max_offset_seconds",
            "The configured bound on |offset| (chrony.max_offset_seconds) beyond which the "
            "server is withdrawn",
            lambda st: bound,
        )
        yield gauge(
            "offset_seconds",
            "System time minus true time as chronyd estimates it (positive: fast)",
            tracked(lambda t: t.offset),
        )
        yield gauge(
            "last_offset_seconds",
            "Offset estimated at the last clock update",
            tracked(lambda t: t.last_offset),
        )
        yield gauge(
            "root_delay_seconds",
            "Total network path delay to the stratum-1 source",
            tracked(lambda t: t.root_delay),
        )
        yield gauge(
            "root_dispersion_seconds",
            "Total dispersion accumulated to the stratum-1 source",
            tracked(lambda t: t.root_dispersion),
        )
        yield gauge(
            "frequency_ratio",
            "Frequency error of the system clock (positive: fast), as a ratio (x 1e6 = ppm)",
            tracked(lambda t: t.frequency_ppm * 1e-6),
        )
        yield gauge(
            "skew_ratio",
            "Estimated error bound of the frequency, as a ratio",
            tracked(lambda t: t.skew_ppm * 1e-6),
        )
        yield gauge(
            "reachable_sources",
            "Sources that answered at least one of the last eight polls",
            lambda st: (
                float(sum(1 for s in st.sources if s.reach)) if st.tracking is not None else None
            ),
        )
        c = CounterMetricFamily(f"{NS}_polls", "Polls of chronyd", labels=["server", "outcome"])
        for st in states:
            c.add_metric([st.server.name, "answered"], st.polls - st.failures)
            c.add_metric([st.server.name, "failed"], st.failures)
        yield c
        c = CounterMetricFamily(
            f"{NS}_withdrawals",
            "Times a server's NTP service was withdrawn because it turned unhealthy",
        )
        c.add_metric([], self.svc.withdrawals)
        yield c
        reach = GaugeMetricFamily(
            f"{NS}_source_reachability_ratio",
            "Share of the last eight polls of a source that were answered",
            labels=["server", "source"],
        )
        offset = GaugeMetricFamily(
            f"{NS}_source_offset_seconds",
            "Local clock minus the source at the last sample",
            labels=["server", "source"],
        )
        selected = GaugeMetricFamily(
            f"{NS}_source_selected",
            "1 for the source chronyd synchronises to",
            labels=["server", "source"],
        )
        for st in states:
            for s in st.sources:
                labels = [st.server.name, s.address]
                reach.add_metric(labels, s.reachability)
                offset.add_metric(labels, s.offset)
                selected.add_metric(labels, 1.0 if s.selected else 0.0)
        yield reach
        yield offset
        yield selected
        r = self.svc.responder
        c = CounterMetricFamily(
            f"{NS}_mdns_packets_sent", "Packets the NTP responder sent", labels=["kind"]
        )
        for kind in ("probe", "announce", "answer", "answer_unicast", "goodbye"):
            c.add_metric([kind], r.sent[kind])
        yield c
        c = CounterMetricFamily(f"{NS}_mdns_conflicts", "Name conflicts met while probing")
        c.add_metric([], r.conflicts)
        yield c
        c = CounterMetricFamily(
            f"{NS}_mdns_answers_dropped",
            "Delayed responder answers dropped: the queue of pending answers was full",
        )
        c.add_metric([], r.dropped_answers)
        yield c
