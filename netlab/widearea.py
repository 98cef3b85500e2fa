"""The wide-area lab's authoritative servers, shared by tests/ and loadtest/: the lab zone and
the README's example server configurations (Knot's knot.conf, BIND's named.conf.local) made
runnable: only what the README marks as placeholders is replaced (the secret, the server's
address, the paths)."""

from __future__ import annotations

import re
from pathlib import Path

from .lab import REPO_ROOT

ZONE = "dnssd.example.com"
ZONE_FILE = f"""$ORIGIN {ZONE}.
$TTL 300
@ SOA ns hostmaster 1 3600 600 86400 60
@ NS ns
ns A 127.0.0.1
"""


def readme_block(marker: str) -> str:
    """The README's fenced code block whose first line contains ``marker``."""
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", readme, re.M | re.S)
    found = [b for b in blocks if marker in b.splitlines()[0]]
    assert len(found) == 1, f"README has {len(found)} blocks starting with {marker!r}"
    return found[0]


def knot_config(directory: Path, secret: str, port: int) -> Path:
    """The README's Knot block in ``directory`` (created) with its zone file; the config path."""
    (directory / "db").mkdir(parents=True)
    text = (
        readme_block("knot.conf (wide-area example)")
        .replace('"/run/knot"', f'"{directory}"')
        .replace('"/var/lib/knot"', f'"{directory}/db"', 1)
        .replace('"/var/lib/knot"', f'"{directory}"')
        .replace("192.0.2.53@53", f"127.0.0.1@{port}")
        .replace("SECRET-FROM-KEYMGR", secret)
    )
    (directory / "knot.conf").write_text(text)
    (directory / f"{ZONE}.zone").write_text(ZONE_FILE)
    return directory / "knot.conf"


# Debian's /etc/bind/named.conf.options for a lab: the README's block is named.conf.local, which
# Debian's named.conf includes beside these options; here they confine named to its directory
# and one loopback port (no rndc channel on 953, no root-key fetch, no resolver)
NAMED_OPTIONS = """options {{
    directory "{directory}";
    pid-file "{directory}/named.pid";
    session-keyfile "{directory}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
}};
controls {{ }};
include "{directory}/named.conf.local";
"""


def bind_config(directory: Path, secret: str, port: int) -> Path:
    """The README's BIND block as ``directory``/named.conf.local (created) under lab options,
    with its zone file; the path of named.conf (``named -g -c`` it)."""
    directory.mkdir(parents=True)
    text = (
        readme_block("named.conf.local (wide-area example)")
        .replace('"/var/lib/bind/', f'"{directory}/')
        .replace("SECRET-FROM-TSIG-KEYGEN", secret)
    )
    (directory / "named.conf.local").write_text(text)
    (directory / "named.conf").write_text(NAMED_OPTIONS.format(directory=directory, port=port))
    (directory / f"{ZONE}.zone").write_text(ZONE_FILE)
    return directory / "named.conf"
