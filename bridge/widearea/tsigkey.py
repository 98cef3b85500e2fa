"""The TSIG key file: BIND's ``tsig-keygen`` form, Knot's ``keymgr -t`` form, or a bare
base64 secret. Pure: text in, a key or the problem out (the config loader reads the file).

Both tools name the key and its algorithm in the file; when they differ from the config's
``tsig.name`` or ``tsig.algorithm`` the server would answer every UPDATE with BADKEY, so that
is a configuration error here rather than a puzzle at run time.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

import dns.name
import dns.tsig

from ..errors import GatewayError

# config spelling -> dnspython's algorithm name; hmac-md5 is left out (RFC 8945 §6: MUST NOT)
ALGORITHMS: dict[str, dns.name.Name] = {
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}

_BIND = re.compile(
    r'key\s+"?(?P<name>[^"\s{]+)"?\s*\{(?P<body>[^}]*)\}\s*;?', re.IGNORECASE | re.DOTALL
)
_BIND_ALGORITHM = re.compile(r"algorithm\s+\"?(?P<v>[A-Za-z0-9-]+)\"?\s*;", re.IGNORECASE)
_BIND_SECRET = re.compile(r'secret\s+"(?P<v>[^"]*)"\s*;', re.IGNORECASE)
_KNOT = re.compile(r"^\s*-?\s*(?P<k>id|algorithm|secret)\s*:\s*(?P<v>\S+)\s*$", re.M)
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


@dataclass(frozen=True, slots=True)
class TsigKey:
    """A key as the update messages use it; the secret stays out of ``repr``."""

    name: dns.name.Name
    algorithm: dns.name.Name
    secret: bytes = field(repr=False)

    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        return {self.name: dns.tsig.Key(self.name, self.secret, self.algorithm)}


class KeyFileProblem(GatewayError):
    """What is wrong with the key file's content (the loader adds the file and the key)."""


def _secret(text: str) -> bytes:
    text = text.strip()
    if not text or not _BASE64.match(text):
        raise KeyFileProblem("the secret is not base64")
    try:
        secret = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileProblem("the secret is not base64") from None
    if len(secret) < 16:
        raise KeyFileProblem(f"the secret is {len(secret)} bytes; a TSIG secret has 16 or more")
    return secret


def parse(text: str, name: dns.name.Name, algorithm: str) -> TsigKey:
    """The key in ``text`` for the configured ``name`` and ``algorithm`` (a config spelling).

    Raises KeyFileProblem naming what is wrong (the fix is the caller's message)."""
    wanted = ALGORITHMS[algorithm]
    found_name: str | None = None
    found_alg: str | None = None
    secret_text: str | None = None
    bind = list(_BIND.finditer(text))
    knot = {m.group("k"): m.group("v").strip("'\"") for m in _KNOT.finditer(text)}
    if bind:
        picked = next((m for m in bind if _same(m.group("name"), name)), bind[0])
        found_name = picked.group("name")
        alg = _BIND_ALGORITHM.search(picked.group("body"))
        sec = _BIND_SECRET.search(picked.group("body"))
        if sec is None:
            raise KeyFileProblem(f'key "{found_name}" has no secret "...";')
        secret_text = sec.group("v")
        found_alg = alg.group("v") if alg else None
    elif "secret" in knot:
        found_name, found_alg, secret_text = knot.get("id"), knot.get("algorithm"), knot["secret"]
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        if len(lines) != 1:
            raise KeyFileProblem(
                "neither a tsig-keygen key block, a keymgr key nor one line of base64"
            )
        secret_text = lines[0]
    if found_name is not None and not _same(found_name, name):
        raise KeyFileProblem(f"the file's key is named {found_name!r}, tsig.name is {name}")
    if found_alg is not None and found_alg.lower() != algorithm:
        raise KeyFileProblem(f"the file's key is {found_alg}, tsig.algorithm is {algorithm}")
    return TsigKey(name, wanted, _secret(secret_text))


def _same(text: str, name: dns.name.Name) -> bool:
    try:
        return dns.name.from_text(text) == name
    except Exception:  # dnspython raises several types for bad names
        return False
