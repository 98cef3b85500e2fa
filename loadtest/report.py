"""Results -> the issue's targets, a Markdown table, and (with matplotlib) a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _get(res: dict[str, Any], *path: str) -> Any:
    cur: Any = res
    for key in path:
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


def _target(value: float | None, limit: float, above: bool) -> dict[str, Any]:
    met = None if value is None else (value >= limit if above else value < limit)
    return {"value": value, "target": f"{'>=' if above else '<'} {limit:g}", "met": met}


def targets(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issues' targets, each with value, verdict and the issue that set it: issue 6 ('Make
    it fast enough'), 16 (wide-area publishing) and 18 ('Footprint on a small router')."""
    out: dict[str, dict[str, Any]] = {}
    if _get(res, "udp") is not None:
        out["udp_qps_ratio"] = _target(
            _get(res, "udp", "ratios", "qps_gateway_over_nsd"), 0.7, above=True
        )
        cpu = _get(res, "udp", "ratios", "cpu_per_query_gateway_over_nsd")
        out["udp_cpu_per_query_ratio"] = {
            **_target(cpu, 1.5, above=False),
            "target": "<= 1.5",
            "met": None if cpu is None else cpu <= 1.5,
        }
        out["udp_p99_half_load_ms"] = _target(
            _get(res, "udp", "gateway", "half_load", "p99_ms"), 2.0, above=False
        )
    for kind in ("A", "SRV"):
        if _get(res, "cold", kind) is not None:
            out[f"cold_{kind}_p95_ms"] = _target(
                _get(res, "cold", kind, "p95_ms"), 250.0, above=False
            )
    if _get(res, "cold", "PTR") is not None:
        out["cold_PTR_p95_ms"] = _target(_get(res, "cold", "PTR", "p95_ms"), 1000.0, above=False)
    for kind in ("response", "query"):
        r = _get(res, "reflector", kind)
        if r:
            out[f"reflector_{kind}_pps_ratio"] = _target(r.get("pps_ratio"), 10.0, above=True)
            cpu = r.get("cpu_us_per_packet")
            out[f"reflector_{kind}_cpu_us"] = {
                **_target(cpu, 100.0, above=False),
                "target": "<= 100",
                "met": None if cpu is None else cpu <= 100,
            }
    publish = _get(res, "widearea", "publish") or []
    if publish:
        times = [p["after_learned_s"] for p in publish]
        worst = None if None in times else max(times)
        out["widearea_all_published_after_learned_s"] = {
            **_target(worst, 10.0, above=False),
            "issue": 16,
        }
    if _get(res, "widearea", "within_noise") is not None:
        out["widearea_udp_qps_within_noise"] = {
            "value": _get(res, "widearea", "ratio_with_over_without"),
            "target": "within run-to-run spread",
            "met": _get(res, "widearea", "within_noise"),
            "issue": 16,
        }
    steps = _get(res, "memory", "steps") or []
    big = [s for s in steps if s["services"] >= 10_000]
    if big:
        out["rss_10k_services_mb"] = _target(big[-1]["rss_mb"], 80.0, above=False)
        # issue 18: under 60 MB with aiohttp loaded (the HTTP surface is on, as by default)
        out["rss_10k_services_every_answer_prerendered_mb"] = {
            **_target(big[-1]["rss_warm_mb"], 60.0, above=False),
            "issue": 18,
        }
    out.update(_issue18(res))
    return out


def _at_most(value: float | None, limit: float) -> dict[str, Any]:
    """An issue 18 target 'value <= limit' (a ratio to a reference)."""
    return {
        "value": value,
        "target": f"<= {limit:g}",
        "met": None if value is None else value <= limit,
        "issue": 18,
    }


def _issue18(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Issue 18's targets against the references of the same run: idle packets <= avahi-browse's,
    UDP CPU per cached answer <= NSD's and q/s >= NSD's, start-up <= 1.5x NSD's."""
    out: dict[str, dict[str, Any]] = {}
    g, a = _get(res, "idle", "gateway"), _get(res, "idle", "avahi")
    if g and a:
        mine, theirs = g.get("mean_packets_per_vlan_hour"), a.get("mean_packets_per_vlan_hour")
        ratio = mine / theirs if mine is not None and theirs else None
        out["idle_packets_ratio_vs_avahi_browse"] = _at_most(ratio, 1.0)
    if _get(res, "udp") is not None:
        cpu = _get(res, "udp", "ratios", "cpu_per_query_gateway_over_nsd")
        out["udp_cpu_per_query_ratio_issue18"] = _at_most(cpu, 1.0)
        qps = _get(res, "udp", "ratios", "qps_gateway_over_nsd")
        out["udp_qps_ratio_issue18"] = {**_target(qps, 1.0, above=True), "issue": 18}
    st = res.get("startup")
    if st and st.get("gateway_median_s") is not None and st.get("nsd_median_s"):
        out["startup_ratio_vs_nsd"] = _at_most(st["gateway_median_s"] / st["nsd_median_s"], 1.5)
    return out


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _ratio(a: Any, b: Any) -> str:
    return (
        f"{a / b:.2f}×" if isinstance(a, int | float) and isinstance(b, int | float) and b else "–"
    )


def markdown(res: dict[str, Any]) -> str:
    m = res.get("machine", {})
    lines = [
        f"# mdns-gateway load test {res.get('timestamp', '')}",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
        f"{_fmt(m.get('memory_mb'))} MB, Linux {m.get('kernel', '?')}, "
        f"Python {m.get('python', '?')}; dnsperf on core 0, servers on core 1; "
        f"commit {m.get('commit', '?')}.",
        "",
    ]
    wl = res.get("workload")
    if wl:
        lines += [
            f"Workload: {wl['services']} service instances on {wl['devices']} devices "
            f"over 3 VLANs ({', '.join(f'{k} {v}' for k, v in wl['kinds'].items())}); "
            f"{wl['names']} names, query mix "
            f"{', '.join(f'{k} {v:.0%}' for k, v in wl['mix'].items())}, "
            "half .local, half <vlan>.home.arpa., EDNS 1232.",
            "",
        ]
    lines += ["| measure | gateway | reference | gateway / reference |", "|---|---:|---:|---:|"]

    def row(name: str, g: Any, r: Any, ratio: str | None = None, digits: int = 1) -> None:
        lines.append(
            f"| {name} | {_fmt(g, digits)} | {_fmt(r, digits)} | "
            f"{ratio if ratio is not None else _ratio(g, r)} |"
        )

    for t in ("udp", "tcp"):
        sec = res.get(t)
        if not sec:
            continue
        g, n = sec["gateway"], sec["nsd"]
        T = t.upper()
        row(f"{T} cached answers, q/s (vs NSD)", g["max"]["qps"], n["max"]["qps"], digits=0)
        row(
            f"{T} server CPU per query, µs",
            g["max"]["cpu_us_per_query"],
            n["max"]["cpu_us_per_query"],
            digits=2,
        )
        row(
            f"{T} p50 / p99 latency at max load, ms",
            f"{_fmt(g['max_latency']['p50_ms'], 3)} / {_fmt(g['max_latency']['p99_ms'], 3)}",
            f"{_fmt(n['max_latency']['p50_ms'], 3)} / {_fmt(n['max_latency']['p99_ms'], 3)}",
            _ratio(g["max_latency"]["p99_ms"], n["max_latency"]["p99_ms"]),
        )
        row(
            f"{T} p50 / p99 latency at {sec['half_load_qps']:,} q/s (half the gateway's max), ms",
            f"{_fmt(g['half_load']['p50_ms'], 3)} / {_fmt(g['half_load']['p99_ms'], 3)}",
            f"{_fmt(n['half_load']['p50_ms'], 3)} / {_fmt(n['half_load']['p99_ms'], 3)}",
            _ratio(g["half_load"]["p99_ms"], n["half_load"]["p99_ms"]),
        )
        row(
            f"{T} mean response size, bytes",
            g["max"]["response_bytes"],
            n["max"]["response_bytes"],
            digits=0,
        )
    cold = res.get("cold")
    if cold:
        for kind, label in (("A", "A"), ("SRV", "SRV"), ("PTR", "PTR browse")):
            c = cold.get(kind)
            if c:
                row(
                    f"cold {label} lookup p50 / p95, ms ({c['answered']}/{c['lookups']} answered)",
                    f"{_fmt(c['p50_ms'])} / {_fmt(c['p95_ms'])}",
                    None,
                    "",
                )
    mem = res.get("memory")
    if mem:
        row(
            "RSS at rest with no services (HTTP up, aiohttp loaded, settled), MB (vs avahi-daemon)",
            mem["baseline_rss_mb"],
            mem.get("avahi_baseline_rss_mb"),
        )
        for s in mem["steps"]:
            row(
                f"RSS with {s['services']:,} services ({s['records_held']:,} records), MB; "
                "after every answer pre-rendered (vs avahi-daemon holding "
                f"{_fmt(s.get('avahi_records'))} records)",
                f"{_fmt(s['rss_mb'])}; {_fmt(s['rss_warm_mb'])}",
                s.get("avahi_rss_mb"),
                _ratio(s["rss_warm_mb"], s.get("avahi_rss_mb")),
            )
        per = mem.get("per_1000_services")
        if per:
            row(
                "RSS per extra 1,000 services, MB; after every answer pre-rendered "
                "(vs avahi-daemon)",
                f"{_fmt(per['rss_mb'], 2)}; {_fmt(per['rss_warm_mb'], 2)}",
                per.get("avahi_rss_mb"),
                _ratio(per["rss_warm_mb"], per.get("avahi_rss_mb")),
                digits=2,
            )
    st = res.get("startup")
    if st:
        row(
            "start-up to first answer, s (vs NSD)",
            st["gateway_median_s"],
            st["nsd_median_s"],
            digits=3,
        )
    idle = res.get("idle")
    if idle:
        g, a = idle["gateway"], idle["avahi"]
        for key, what in (
            (
                "mean_packets_per_vlan_hour",
                f", {idle['services']} services (vs avahi-browse -a -r)",
            ),
            ("mean_steady_state_per_vlan_hour", " once browses reach 60 min (computed)"),
        ):
            if key in g and key in a:
                row(f"idle mDNS packets per VLAN per hour{what}", g[key], a[key], digits=0)
        moves = g.get("comings_and_goings")
        if moves:
            for key, what in (
                ("new_service_to_answer_ms", "new service announced -> in the DNS answer"),
                ("goodbye_to_gone_ms", "goodbye sent -> gone from the DNS answer"),
            ):
                m = moves[key]
                row(
                    f"{what}, p50 / max ms ({m['measured']}/{moves['count']} measured)",
                    f"{_fmt(m['p50'], 1)} / {_fmt(m['max'], 1)}",
                    None,
                    "",
                )
    wide = res.get("widearea")
    if wide:
        for p in wide["publish"]:
            row(
                f"wide-area: {p['services']:,} services learned at once, all published into "
                "knotd, s after start; after the store held them all",
                f"{_fmt(p['published_s'], 2)}; {_fmt(p['after_learned_s'], 2)}",
                None,
                "",
            )
        runs = wide["udp_qps"]
        row(
            "wide-area: UDP cached answers, q/s, publishing vs not (median; every run)",
            f"{_fmt(wide.get('udp_qps_median_with'), 0)} ({', '.join(map(_fmt, runs['with']))})",
            f"{_fmt(wide.get('udp_qps_median_without'), 0)} "
            f"({', '.join(map(_fmt, runs['without']))})",
            _ratio(wide.get("udp_qps_median_with"), wide.get("udp_qps_median_without")),
        )
        spreads = [wide.get("spread_without"), wide.get("spread_with")]
        row(
            "wide-area: run-to-run spread of those q/s, (max - min) / median, publishing vs "
            "not; their medians' difference within it",
            f"{_fmt(spreads[1], 3)}",
            f"{_fmt(spreads[0], 3)}",
            {True: "yes", False: "**no**", None: "–"}[wide.get("within_noise")],
        )
    refl = res.get("reflector")
    if refl:
        if "status" in refl:
            row("reflector", refl["status"], None, "")
        for kind, plural in (("response", "responses"), ("query", "queries")):
            r = refl.get(kind)
            if r:
                row(
                    f"reflector, {plural}: packets/s at zero loss (vs avahi reflector)",
                    r["zero_loss_pps"],
                    r["avahi_zero_loss_pps"],
                    digits=0,
                )
                row(
                    f"reflector, {plural}: CPU per reflected packet, µs",
                    r["cpu_us_per_packet"],
                    r["avahi_cpu_us_per_packet"],
                )
    tg = res.get("targets") or {}
    if tg:
        lines += ["", "| target | issue | value | target | met |", "|---|---:|---:|---:|:-:|"]
        for name, t in tg.items():
            met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
            lines.append(
                f"| {name} | {t.get('issue', 6)} | {_fmt(t['value'], 2)} | {t['target']} | {met} |"
            )
    return "\n".join(lines) + "\n"


def plot(res: dict[str, Any], path: Path) -> None:
    """Throughput and latency side by side (needs matplotlib: the 'plot' extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    transports = [t for t in ("udp", "tcp") if res.get(t)]
    if not transports:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.38
    xs = range(len(transports))
    colours = {"gateway": ("#1f77b4", "#9ecae1"), "nsd": ("#e6550d", "#fdae6b")}
    for i, server in enumerate(("gateway", "nsd")):
        qps = [res[t][server]["max"]["qps"] / 1000 for t in transports]
        p99 = [res[t][server]["half_load"]["p99_ms"] or 0 for t in transports]
        p50 = [res[t][server]["half_load"]["p50_ms"] or 0 for t in transports]
        off = [x + (i - 0.5) * width for x in xs]
        dark, light = colours[server]
        axes[0].bar(off, qps, width, label=server, color=dark)
        axes[1].bar(off, p99, width, label=f"{server} p99", color=dark)
        axes[1].bar(off, p50, width * 0.5, label=f"{server} p50", color=light)
    for ax, title in zip(
        axes, ("cached answers, thousand q/s", "latency at half load, ms"), strict=True
    ):
        ax.set_xticks(list(xs), [t.upper() for t in transports])
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle(f"mdns-gateway vs NSD ({res.get('timestamp', '')})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
