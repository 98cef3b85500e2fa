"""``python -m loadtest``: the side-by-side benchmark (gateway vs NSD and avahi) in one run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .runner import PHASES, Options, run_all


def main(argv: list[str] | None = None) -> int:
    d = Options()
    p = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__)
    p.add_argument(
        "--only",
        default=",".join(PHASES),
        help=f"comma-separated phases (default: all: {','.join(PHASES)})",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="the smoke test's size (seconds): for trying the harness, not figures",
    )
    p.add_argument("--seconds", type=float, default=d.seconds, help="per dnsperf run")
    p.add_argument(
        "--repeats",
        type=int,
        default=d.repeats,
        help="runs per server: max q/s (best kept) and latency (median p99)",
    )
    p.add_argument(
        "--services",
        type=int,
        default=d.services,
        help="service instances for throughput and cold lookups",
    )
    p.add_argument("--idle-window", type=float, default=d.idle_window, help="seconds counted")
    p.add_argument(
        "--idle-warmup", type=float, default=d.idle_warmup, help="seconds after start not counted"
    )
    p.add_argument("--out", type=Path, default=d.out, help="results directory")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--pure",
        action="store_true",
        help="run the gateway as pure Python (default: its hot-path modules "
        "compiled into build/compiled, as build_ext.py builds them)",
    )
    args = p.parse_args(argv)
    phases = tuple(x.strip() for x in args.only.split(",") if x.strip())
    unknown = set(phases) - set(PHASES)
    if unknown:
        p.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    if args.quick:
        opts = Options.smoke(args.out)
        opts.phases = phases if args.only != ",".join(PHASES) else opts.phases
    else:
        opts = Options(
            out=args.out,
            phases=phases,
            seconds=args.seconds,
            repeats=args.repeats,
            services=args.services,
            idle_window=args.idle_window,
            idle_warmup=args.idle_warmup,
            plot=not args.no_plot,
            pure=args.pure,
        )
    res, path = run_all(opts)
    from .report import markdown

    print(markdown(res))
    print(f"results: {path} and {path.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
