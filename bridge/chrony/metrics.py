"""mdns_gateway_chrony_*: the chrony service's state, read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric

from ..metrics import counter, gauge
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

        def per_server(
            name: str, doc: str, value: Callable[[ServerState], float | None]
        ) -> GaugeMetricFamily:
            values = ((st.server.name, value(st)) for st in states)
            return gauge(
                f"{NS}_{name}", doc, [(k, v) for k, v in values if v is not None], ["server"]
            )

        def tracked(fn: Callable[[Tracking], float]) -> Callable[[ServerState], float | None]:
            return lambda st: fn(st.tracking) if st.tracking is not None else None

        yield per_server(
            "up",
            "1 if chronyd answered the last poll",
            lambda st: 0.0 if st.tracking is None else 1.0,
        )
        yield per_server(
            "healthy",
            "1 if the server passes the health rule (synchronised, "
            "stratum < 16, |offset| within the bound)",
            lambda st: 1.0 if st.health.healthy else 0.0,
        )
        yield per_server(
            "advertised",
            "1 if the server's NTP service is advertised (mDNS and DNS)",
            lambda st: 1.0 if st.advertised and self.svc.advertised_on(st.server.name) else 0.0,
        )
        yield per_server(
            "synchronised",
            "1 if chronyd is synchronised and follows a reference",
            lambda st: (
                1.0 if st.tracking is not None and synchronised(st.tracking, st.sources) else 0.0
            ),
        )
        yield per_server("stratum", "NTP stratum of chronyd", tracked(lambda t: float(t.stratum)))
        # the configured bound beside the offset, so that an alert compares the two without
        # repeating the config (deploy/prometheus/rules.yaml, MdnsGatewayClockSkewDetected)
        bound = self.svc.config.max_offset_seconds
        yield per_server(
            "max_offset_seconds",
            "The configured bound on |offset| (chrony.max_offset_seconds) beyond which the "
            "server is withdrawn",
            lambda st: bound,
        )
        yield per_server(
            "offset_seconds",
            "System time minus true time as chronyd estimates it (positive: fast)",
            tracked(lambda t: t.offset),
        )
        yield per_server(
            "last_offset_seconds",
            "Offset estimated at the last clock update",
            tracked(lambda t: t.last_offset),
        )
        yield per_server(
            "root_delay_seconds",
            "Total network path delay to the stratum-1 source",
            tracked(lambda t: t.root_delay),
        )
        yield per_server(
            "root_dispersion_seconds",
            "Total dispersion accumulated to the stratum-1 source",
            tracked(lambda t: t.root_dispersion),
        )
        yield per_server(
            "frequency_ratio",
            "Frequency error of the system clock (positive: fast), as a ratio (x 1e6 = ppm)",
            tracked(lambda t: t.frequency_ppm * 1e-6),
        )
        yield per_server(
            "skew_ratio",
            "Estimated error bound of the frequency, as a ratio",
            tracked(lambda t: t.skew_ppm * 1e-6),
        )
        yield per_server(
            "reachable_sources",
            "Sources that answered at least one of the last eight polls",
            lambda st: (
                float(sum(1 for s in st.sources if s.reach)) if st.tracking is not None else None
            ),
        )
        yield counter(
            f"{NS}_polls",
            "Polls of chronyd",
            [
                ((st.server.name, outcome), n)
                for st in states
                for outcome, n in (("answered", st.polls - st.failures), ("failed", st.failures))
            ],
            ["server", "outcome"],
        )
        yield counter(
            f"{NS}_withdrawals",
            "Times a server's NTP service was withdrawn because it turned unhealthy",
            self.svc.withdrawals,
        )
        sources = [((st.server.name, s.address), s) for st in states for s in st.sources]
        yield gauge(
            f"{NS}_source_reachability_ratio",
            "Share of the last eight polls of a source that were answered",
            ((labels, s.reachability) for labels, s in sources),
            ["server", "source"],
        )
        yield gauge(
            f"{NS}_source_offset_seconds",
            "Local clock minus the source at the last sample",
            ((labels, s.offset) for labels, s in sources),
            ["server", "source"],
        )
        yield gauge(
            f"{NS}_source_selected",
            "1 for the source chronyd synchronises to",
            ((labels, 1.0 if s.selected else 0.0) for labels, s in sources),
            ["server", "source"],
        )
        r = self.svc.responder
        yield counter(
            f"{NS}_mdns_packets_sent",
            "Packets the NTP responder sent",
            ((k, r.sent[k]) for k in ("probe", "announce", "answer", "answer_unicast", "goodbye")),
            ["kind"],
        )
        yield counter(f"{NS}_mdns_conflicts", "Name conflicts met while probing", r.conflicts)
        yield counter(
            f"{NS}_mdns_answers_dropped",
            "Delayed responder answers dropped: the queue of pending answers was full",
            r.dropped_answers,
        )
