"""Talking to chronyd: run ``chronyc`` for one server and return its CSV report."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from .. import const
from .health import ChronyError


def chronyc_argv(control: tuple[str, int] | str, chronyc: str = "chronyc") -> list[str]:
    """``chronyc -c -n`` for one server: CSV, no DNS look-ups, short retries, both reports."""
    if isinstance(control, str):
        target = ["-h", control]
    else:
        target = ["-h", control[0], "-p", str(control[1])]
    return [
        chronyc,
        "-c",
        "-n",
        *target,
        "-m",
        f"timeout {const.CHRONYC_REQUEST_TIMEOUT_MS}",
        f"retries {const.CHRONYC_RETRIES}",
        "tracking",
        "sources",
    ]


async def query_chronyd(
    control: tuple[str, int] | str,
    chronyc: str = "chronyc",
    timeout: float = const.CHRONY_QUERY_TIMEOUT,
) -> str:
    """Run chronyc; its output, or ChronyError (not answering, killed at the deadline)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *chronyc_argv(control, chronyc),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise ChronyError(f"cannot run {chronyc}: {exc}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        _kill(proc)
        await proc.wait()
        raise ChronyError(f"no answer within {timeout:g} s") from None
    except BaseException:  # cancelled (shutdown, a stopped poll): the child must not outlive us
        _kill(proc)
        raise
    if proc.returncode != 0:
        msg = (err or out).decode(errors="replace").strip().splitlines()
        raise ChronyError(msg[-1] if msg else f"chronyc exited with {proc.returncode}")
    return out.decode(errors="replace")


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has just exited
        proc.kill()


QueryFn = Callable[[tuple[str, int] | str], Awaitable[str]]  # control -> chronyc output
