"""The metric names a registry exports and the names the README's metric tables document."""

from __future__ import annotations

import re

from prometheus_client.registry import CollectorRegistry

from tests.support.cli import ROOT

NS = "mdns_gateway_"


def exported(registry: CollectorRegistry) -> set[str]:
    """Metric names as scraped: counters with their _total."""
    return {
        m.name + ("_total" if m.type == "counter" else "")
        for m in registry.collect()
        if m.name.startswith(NS)
    }


def documented() -> set[str]:
    """Names in the README's metric tables; a row may abbreviate its further names to a
    suffix (``mdns_gateway_store_records`` / ``_max``, ``..._evicted_records_total``,
    ``_expired_records_total``): each suffix may replace any tail of the row's full name."""
    names: set[str] = set()
    for line in (ROOT / "README.md").read_text().splitlines():
        if not line.startswith("|"):
            continue
        tokens = re.findall(r"`([a-z_]+)(?:\{[^}`]*\})?`", line.split("|")[1])
        full = [t for t in tokens if t.startswith(NS)]
        names.update(full)
        if not full:
            continue
        parts = full[0].split("_")
        for suffix in (t for t in tokens if t.startswith("_")):
            names.update("_".join(parts[:k]) + suffix for k in range(2, len(parts) + 1))
    return names
