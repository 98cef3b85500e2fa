"""Logging helpers: one line per event, and repeated warnings that go quiet."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Hashable
from datetime import UTC, datetime

from . import const


class RateLimitedLog:
    """Logs a message for a key at most once per LOG_RATE_LIMIT_INTERVAL, counting the rest."""

    def __init__(
        self, logger: logging.Logger, interval: float = const.LOG_RATE_LIMIT_INTERVAL
    ) -> None:
        self.logger = logger
        self.interval = interval
        self._last: OrderedDict[Hashable, list[float]] = OrderedDict()

    def _emit(self, level: int, key: Hashable, msg: str, *args: object) -> None:
        if not self.logger.isEnabledFor(level):
            return
        now = time.monotonic()
        slot = self._last.get(key)
        if slot is not None and now - slot[0] < self.interval:
            slot[1] += 1
            return
        suppressed = int(slot[1]) if slot else 0
        self._last[key] = [now, 0]
        self._last.move_to_end(key)
        if len(self._last) > const.LOG_RATE_LIMIT_KEYS_MAX:
            self._last.popitem(last=False)
        if suppressed:
            msg += f" (and {suppressed} more like it)"
        self.logger.log(level, msg, *args)

    def warning(self, key: Hashable, msg: str, *args: object) -> None:
        self._emit(logging.WARNING, key, msg, *args)

    def info(self, key: Hashable, msg: str, *args: object) -> None:
        self._emit(logging.INFO, key, msg, *args)

    def debug(self, key: Hashable, msg: str, *args: object) -> None:
        self._emit(logging.DEBUG, key, msg, *args)


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
