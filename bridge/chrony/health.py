"""chronyd's reports parsed, and the health rule that decides whether a server is advertised.

Pure: :func:`parse_report` reads ``chronyc -c -n -m tracking sources`` output, :func:`judge` is
the health rule (see the package docstring), :class:`ServerState` adds the hysteresis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .. import const
from ..configsections import ChronyServer
from ..errors import GatewayError

LOCAL_REFID = 0x7F7F0101  # "LOCL": chronyd serving its own clock (``local stratum N``)
UNSYNCHRONISED = "Not synchronised"
LEAP_TXT = {
    "Normal": "normal",
    "Insert second": "insert",
    "Delete second": "delete",
    UNSYNCHRONISED: "unsynchronised",
}


class ChronyError(GatewayError):
    """chronyd's answer could not be understood."""


# --- parsing (pure) --------------------------------------------------------------------------


def _quote(line: str) -> str:
    """A chronyc line for an error message, cut short (it may be any junk)."""
    return repr(line.strip()[: const.CHRONY_MESSAGE_LINE_MAX])


@dataclass(frozen=True, slots=True)
class Tracking:
    """``chronyc -c tracking``; times in seconds, frequencies in ppm, signs as chrony's."""

    ref_id: int
    ref_name: str
    stratum: int
    ref_time: float  # s since the epoch of the last clock update
    correction: float  # s; chrony's "System time": positive means the clock is slow
    last_offset: float
    rms_offset: float
    frequency_ppm: float  # positive: the clock runs fast (uncorrected)
    residual_ppm: float
    skew_ppm: float
    root_delay: float
    root_dispersion: float
    update_interval: float
    leap: str  # "Normal", "Insert second", "Delete second", "Not synchronised"

    @property
    def offset(self) -> float:
        """System time minus true time (positive: fast), as chrony's other offsets."""
        return -self.correction


@dataclass(frozen=True, slots=True)
class Source:
    """One line of ``chronyc -c sources``."""

    mode: str  # "^" server, "=" peer, "#" reference clock
    state: str  # "*" selected, "+" combined, "-" not combined, "?" unreachable, "x", "~"
    address: str
    stratum: int
    poll: int  # log2 s
    reach: int  # the 8-bit reachability register
    last_rx: float | None  # s since the last good sample (None: never)
    offset: float  # s; local clock minus source (positive: local clock ahead), adjusted
    measured_offset: float
    error: float  # s; error bound of the sample

    @property
    def selected(self) -> bool:
        return self.state == "*"

    @property
    def reachability(self) -> float:
        """Share of the last eight polls that were answered."""
        return bin(self.reach & 0xFF).count("1") / 8


def _num(field: str, what: str) -> float:
    try:
        return float(field)
    except ValueError:
        raise ChronyError(f"{what}: {field!r} is not a number") from None


def parse_tracking(line: str) -> Tracking:
    f = line.strip().split(",")
    if len(f) != 14:
        raise ChronyError(f"tracking: expected 14 fields, got {len(f)}: {_quote(line)}")
    try:
        ref_id = int(f[0], 16)
    except ValueError:
        raise ChronyError(f"tracking: reference ID {f[0]!r} is not hex") from None
    n = [_num(x, "tracking") for x in f[2:13]]
    return Tracking(
        ref_id, f[1], int(n[0]), n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8], n[9], n[10], f[13]
    )


def parse_source(line: str) -> Source:
    f = line.strip().split(",")
    if len(f) != 10:
        raise ChronyError(f"sources: expected 10 fields, got {len(f)}: {_quote(line)}")
    try:
        reach = int(f[5], 8)  # printed in octal, like the table
        stratum, poll, last = int(f[3]), int(f[4]), int(f[6])
    except ValueError:
        raise ChronyError(f"sources: bad number in {_quote(line)}") from None
    return Source(
        f[0],
        f[1],
        f[2],
        stratum,
        poll,
        reach,
        None if last >= 0xFFFFFFFF else float(last),
        _num(f[7], "sources"),
        _num(f[8], "sources"),
        _num(f[9], "sources"),
    )


def parse_report(text: str) -> tuple[Tracking, list[Source]]:
    """The output of ``chronyc -c -n -m tracking sources``: one tracking line, then sources."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ChronyError("empty answer")
    tracking = parse_tracking(lines[0])
    sources = [parse_source(ln) for ln in lines[1 : 1 + const.CHRONY_MAX_SOURCES]]
    return tracking, sources


# --- health (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Health:
    healthy: bool
    reason: str  # ok, no_answer, unsynchronised, no_source, stratum, offset
    detail: str = ""


def synchronised(tracking: Tracking, sources: Sequence[Source]) -> bool:
    """chronyd is synchronised and still follows a reference (see the module docstring)."""
    if tracking.leap == UNSYNCHRONISED:
        return False
    if tracking.ref_id == LOCAL_REFID:
        return True
    return any(s.selected and s.reach for s in sources)


def judge(
    tracking: Tracking | None, sources: Sequence[Source], max_offset: float, error: str = ""
) -> Health:
    """The health rule: answering, synchronised, stratum < 16, |offset| <= max_offset."""
    if tracking is None:
        return Health(False, "no_answer", error or "chronyd did not answer")
    if tracking.leap == UNSYNCHRONISED:
        return Health(False, "unsynchronised", "leap status: Not synchronised")
    if not synchronised(tracking, sources):
        return Health(
            False,
            "no_source",
            "no selected, reachable source (the upstream is "
            "lost; chronyd still says " + tracking.leap + ")",
        )
    if not 1 <= tracking.stratum < 16:
        return Health(False, "stratum", f"stratum {tracking.stratum}")
    if abs(tracking.offset) > max_offset:
        return Health(
            False, "offset", f"system time offset {tracking.offset:+.6f} s is over {max_offset:g} s"
        )
    return Health(
        True,
        "ok",
        f"stratum {tracking.stratum}, offset {tracking.offset:+.6f} s, "
        f"reference {tracking.ref_name or hex(tracking.ref_id)}",
    )


class ServerState:
    """What we know of one chronyd, and whether it is advertised (pure; time passed in).

    Unhealthy withdraws at once; after a withdrawal, CHRONY_RECOVER_POLLS healthy polls in a
    row bring it back, so a server at the edge of the bound does not flap. The very first
    healthy poll after start-up advertises at once.
    """

    def __init__(self, server: ChronyServer) -> None:
        self.server = server
        self.tracking: Tracking | None = None
        self.sources: list[Source] = []
        self.health = Health(False, "no_answer", "not polled yet")
        self.advertised = False
        self.streak = 0
        self.ever_advertised = False
        self.polls = 0
        self.failures = 0
        self.last_poll: float | None = None

    def update(
        self,
        tracking: Tracking | None,
        sources: Sequence[Source],
        max_offset: float,
        now: float,
        error: str = "",
    ) -> bool:
        """Apply one poll; returns True when ``advertised`` changed."""
        self.polls += 1
        self.last_poll = now
        if tracking is None:
            self.failures += 1
        self.tracking, self.sources = tracking, list(sources)
        self.health = judge(tracking, sources, max_offset, error)
        before = self.advertised
        if not self.health.healthy:
            self.streak = 0
            self.advertised = False
        else:
            self.streak += 1
            if not self.ever_advertised or self.streak >= const.CHRONY_RECOVER_POLLS:
                self.advertised = True
                self.ever_advertised = True
        return self.advertised != before
