"""chrony: the health of each configured chronyd, and the NTP records that health governs.

Modules by concept: :mod:`.health` parses ``chronyc -c -n -m tracking sources`` output and
holds the health rule (:func:`judge`) and its hysteresis (:class:`ServerState`);
:mod:`.records` says what to publish (:func:`ntp_spec`, :func:`store_records`); :mod:`.chronyc`
runs ``chronyc``; :mod:`.service` is the asyncio shell (:class:`ChronyService`), which polls
every chronyd each CHRONY_POLL_INTERVAL seconds, publishes the records of healthy servers
through the mDNS responder and pins them in the store (DNS), and withdraws them (goodbyes,
removal) as soon as a server turns unhealthy; :mod:`.metrics` exports them
(:class:`ChronyCollector`).

The health rule (issue 5): a server is healthy when chronyd answers, is synchronised, its
stratum is below 16 and its system time offset is within ``max_offset_seconds``.
"Synchronised" is chronyd's leap status (anything but "Not synchronised") *and* a reference
it is still following: a selected, reachable source (``*``), or its own local reference
(``local stratum N``). chronyd keeps reporting leap status "Normal" after losing every source
(measured with chrony 4.3: "Can't synchronise: no selectable sources" while ``tracking`` still
says Normal), so the leap status alone would keep advertising a server that lost its upstream.
"""

from __future__ import annotations

from .chronyc import QueryFn, chronyc_argv, query_chronyd
from .health import (
    LEAP_TXT,
    LOCAL_REFID,
    UNSYNCHRONISED,
    ChronyError,
    Health,
    ServerState,
    Source,
    Tracking,
    judge,
    parse_report,
    parse_source,
    parse_tracking,
    synchronised,
)
from .metrics import NS, ChronyCollector
from .records import (
    NTP_ALIAS,
    NTP_TYPE,
    NTS_TYPE,
    StoreRecord,
    advertised_addresses,
    ntp_spec,
    server_addresses,
    store_records,
    txt_for,
)
from .service import ChronyService

__all__ = [
    "LEAP_TXT",
    "LOCAL_REFID",
    "NS",
    "NTP_ALIAS",
    "NTP_TYPE",
    "NTS_TYPE",
    "UNSYNCHRONISED",
    "ChronyCollector",
    "ChronyError",
    "ChronyService",
    "Health",
    "QueryFn",
    "ServerState",
    "Source",
    "StoreRecord",
    "Tracking",
    "advertised_addresses",
    "chronyc_argv",
    "judge",
    "ntp_spec",
    "parse_report",
    "parse_source",
    "parse_tracking",
    "query_chronyd",
    "server_addresses",
    "store_records",
    "synchronised",
    "txt_for",
]
