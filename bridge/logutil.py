"""Logging helpers: one line per event, and repeated warnings that go quiet."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from functools import partialmethod
from typing import Any

from . import const


class RateLimitedLog:
    """Logs a message for a key at most once per LOG_RATE_LIMIT_INTERVAL, counting the rest.

    Key by what happened and where (reason, VLAN), never by a peer's address: rotating source
    addresses once wrote one line per packet. Pass the peer as ``source`` instead: the next
    line says how many were quiet and the last source among them.

    Time is the caller's ``now`` when it has one (ingest, the store and the DNS answers pass
    theirs, the event loop's), else ``clock()``: monotonic, as the event loop's own clock is;
    tests pass a clock they move.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = const.LOG_RATE_LIMIT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: OrderedDict[Hashable, list[Any]] = OrderedDict()  # [time, quiet, source]

    def log(
        self,
        level: int,
        key: Hashable,
        msg: str,
        *args: object,
        source: str | None = None,
        now: float | None = None,
    ) -> None:
        """``logger.log(level, msg, *args)`` unless ``key`` logged within the interval."""
        if not self.logger.isEnabledFor(level):
            return
        if now is None:
            now = self.clock()
        slot = self._last.get(key)
        if slot is not None and now - slot[0] < self.interval:
            slot[1] += 1
            slot[2] = source
            return
        suppressed = int(slot[1]) if slot else 0
        last = slot[2] if slot else None
        self._last[key] = [now, 0, None]
        self._last.move_to_end(key)
        if len(self._last) > const.LOG_RATE_LIMIT_KEYS_MAX:
            self._last.popitem(last=False)
        if suppressed:
            msg += f" (and {suppressed} more like it"
            msg += f", the last from {last})" if last else ")"
        self.logger.log(level, msg, *args)

    error = partialmethod(log, logging.ERROR)
    warning = partialmethod(log, logging.WARNING)
    info = partialmethod(log, logging.INFO)
    debug = partialmethod(log, logging.DEBUG)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors: time (UTC, RFC 3339), level, logger,
    message, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, tz=UTC)
        line: dict[str, str] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


LOG_FORMATS = ("text", "json")


def setup(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
