"""What the wide-area tests share: TSIG key texts in each form (the lab zone and the README's
example server configurations are netlab/widearea.py's, which the load test uses too)."""

from __future__ import annotations

import base64

SECRET = bytes(range(32))
B64 = base64.b64encode(SECRET).decode()
BIND = f'key "mdns-gateway" {{\n\talgorithm hmac-sha256;\n\tsecret "{B64}";\n}};\n'
KNOT = (
    "# hmac-sha256:mdns-gateway:" + B64 + "\nkey:\n  - id: mdns-gateway\n"
    "    algorithm: hmac-sha256\n    secret: " + B64 + "\n"
)
