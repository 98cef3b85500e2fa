"""``python -m loadtest.startcost``: the start-up phase's cost, in instructions and modules.

The load test's start-up figure (exec to the first answer) moves by tens of milliseconds with
the scheduler on a shared machine; instruction counts do not. This starts the gateway exactly
as the load test's start-up phase does (``servers.Gateway``: ``python -P -m bridge run`` with
its config, the compiled build, in the router namespace of a lab with the load test's three
VLAN bridges) and polls it with ``. NS`` (``servers.first_answer``) until it answers:

- modules: one start with ``PYTHONPROFILEIMPORTTIME=1`` (``-X importtime``), counting the
  modules the log shows imported before DNS listens (the "DNS listening" line; what is
  imported after it, ``app._import_late``'s HTTP surface, is off the first answer's path);
- ``--callgrind``: ``--runs`` starts under ``valgrind --tool=callgrind``, which dumps its
  counters (every thread's) when the first datagram reaches ``DnsServer._udp_ready`` (the
  compiled method's C wrapper, ``--dump-before``): instructions from exec to the first query
  being read. Two runs of the same build differ by < 0.5 %.

Without ``--callgrind`` the ``--runs`` starts are timed natively (median, as the load test).
Run it as root under the bench and lab locks::

    flock /tmp/mdns-bench.lock flock /tmp/mdns-lab.lock python -m loadtest.startcost --callgrind

``--site``: another compiled build's directory (e.g. one of main's), to compare; ``--keep``: a
directory to keep the dumps in (``callgrind_annotate --inclusive=yes DIR/callgrind.0.out.1``).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

from netlab.lab import Lab

from . import compiled
from .runner import VLANS, Options
from .servers import Gateway
from .udpcost import callgrind_total

# the compiled DnsServer._udp_ready's Python-visible wrapper (Cython names it
# __pyx_pw_<module>_<n>_udp_ready): entered once a datagram is readable on a DNS socket
UDP_READY = "*DnsServer_*_udp_ready"
CALLGRIND_TIMEOUT = 600.0  # s: a start under callgrind runs ~50x slower than native
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|", re.M)


def modules(lab: Lab) -> int:
    """Modules imported before DNS listens, by the import-time log of one start."""
    gw = Gateway(lab, core=None, env={"PYTHONPROFILEIMPORTTIME": "1"})
    try:
        gw.start()
    finally:
        gw.stop()
    log = gw.logs()
    listening = log.find("DNS listening")
    if listening < 0:
        raise SystemExit(f"startcost: no 'DNS listening' in the gateway's log:\n{log[-2000:]}")
    return len(IMPORT_LINE.findall(log, 0, listening))


def instructions(lab: Lab, work: Path, run: int) -> int:
    """Instructions (every thread) from exec to the first query read, one start."""
    out = work / f"callgrind.{run}.out"
    wrap = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        f"--dump-before={UDP_READY}",
    ]
    gw = Gateway(lab, core=None, env={"PYTHONHASHSEED": "0"}, wrap=wrap)
    try:
        gw.start(timeout=CALLGRIND_TIMEOUT)
    finally:
        gw.stop()  # the first dump is written by then
    first = out.with_name(out.name + ".1")  # the first dump; the exit's dump is ``out``
    if not first.exists():
        raise SystemExit(f"startcost: callgrind wrote no dump at {UDP_READY}:\n{gw.logs()[-2000:]}")
    return callgrind_total(first)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.startcost", description=__doc__)
    p.add_argument("--callgrind", action="store_true", help="count instructions")
    p.add_argument("--runs", type=int, help="starts (default: 2 under callgrind, else 5)")
    p.add_argument("--site", type=Path, help="a compiled build's directory to measure")
    p.add_argument("--keep", type=Path, help="keep the callgrind dumps in this directory")
    args = p.parse_args(argv)
    runs = args.runs or (2 if args.callgrind else 5)
    compiled.use(args.site or compiled.build())
    with Lab(VLANS) as lab, tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        n = modules(lab)
        print(f"startcost: {n} modules imported before DNS listens")
        if args.callgrind:
            counts = [instructions(lab, work, i) for i in range(runs)]
            print(
                "startcost: instructions from exec to the first query read: "
                + ", ".join(f"{c / 1e6:,.1f} M" for c in counts)
            )
        else:
            times = []
            for _ in range(runs):
                gw = Gateway(lab, core=Options().server_core)  # pinned, as the phase
                try:
                    gw.start()
                finally:
                    gw.stop()
                assert gw.started_in is not None
                times.append(gw.started_in)
            print(
                "startcost: exec to first answer: "
                + ", ".join(f"{t:.3f}" for t in times)
                + f" s, median {statistics.median(times):.3f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
