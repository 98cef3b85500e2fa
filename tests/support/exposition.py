"""The metric names a running gateway serves on /metrics, and the names a PromQL expression reads.

The alert rules and the dashboard are checked against a real gateway process (``python -m
bridge run`` on loopback, with the reflector and the chrony advertiser on), not against the
README: a name the rules read and the gateway does not serve is an alert that never fires.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from .cli import ROOT
from .kubeapi import write_kubeconfig

# suffixes a family's samples carry in the text format (a counter family "x" is scraped as
# x_total; histograms and summaries as x_bucket, x_sum, x_count)
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
}
# PromQL words that look like names: operators, modifiers, keywords
_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2",
}  # fmt: skip
_STARTUP = 30.0  # s; generous for a loaded CI machine, still fails a gateway that never serves


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_gateway(directory: Path, kubernetes: bool = False) -> Iterator[str]:
    """A gateway process on loopback with every optional component that exports metrics
    (reflector, chrony advertiser, policies directory); yields its /metrics text.

    Its VLANs' interfaces do not exist, so it joins no multicast group and sends nothing
    off the machine; chronyd is asked on a loopback port nothing listens on (the polls fail
    and are counted, which is what the chrony families look like when chronyd is down).
    With ``kubernetes`` the policies come from the Kubernetes source instead of a directory
    (the two exclude each other, and the ``mdns_gateway_kube_*`` families exist only then),
    its API server a loopback port nothing listens on: the gateway starts with the default
    policy, not ready, retrying, which is what those families look like when the API is away.
    """
    policies: str | dict[str, object] = str(directory / "policies")
    if kubernetes:
        kubeconfig = write_kubeconfig(directory / "kubeconfig", f"http://127.0.0.1:{_free_port()}")
        policies = {"kubernetes": {"namespace": "mdns-gateway", "kubeconfig": str(kubeconfig)}}
    else:
        (directory / "policies").mkdir()
    http_port = _free_port()
    config = {
        "vlans": {
            "trusted": {"interface": "nosuch10", "subnets": ["10.10.0.0/24"]},
            "iot": {"interface": "nosuch20", "subnets": ["10.20.0.0/24"]},
        },
        "dns": {"listen": [f"127.0.0.1:{_free_port()}"], "default_view": "trusted"},
        "http": {"listen": f"127.0.0.1:{http_port}"},
        "reflector": {"enabled": True},
        "chrony": {"servers": [{"name": "router", "control": f"127.0.0.1:{_free_port()}"}]},
        "policies": policies,
    }
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (directory / "gateway.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "run", "--config", str(path)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{http_port}/metrics"
        deadline = time.monotonic() + _STARTUP
        text = None
        while text is None:
            if proc.poll() is not None:
                output = (directory / "gateway.log").read_text()
                raise AssertionError(f"the gateway exited: {output}")
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    text = resp.read().decode()
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"no /metrics within {_STARTUP:.0f} s") from None
                time.sleep(0.05)  # polling a deadline, not synchronising on time
        yield text
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def served_names(text: str) -> set[str]:
    """Every sample name the exposition can carry, whether or not a sample is there yet."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + s for s in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def names_read(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (Grafana's $variables allowed).

    Strings, label matchers ``{...}``, ranges ``[...]`` and the label lists of
    by/without/on/ignoring/group_* are removed first (``sum by (vlan) (x)`` becomes
    ``sum (x)``); what is left that is not a function call, a keyword or a number is a
    metric name.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names
