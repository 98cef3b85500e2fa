"""The one root of the errors the gateway raises on purpose.

Each concept defines its own subclass beside the code that raises it: ``config.ConfigError``
and ``policy.PolicyError`` (every problem with its file, key and fix), ``mdns.wire.WireError``
(a packet that cannot be parsed, with a low-cardinality ``reason`` that is counted),
``chrony.ChronyError`` (chronyd's answer not understood), ``mdns.rewrite.Unsupported`` (bytes
the reflector cannot rebuild in place), ``policy.kubeauth.KubeConfigError`` (no usable
Kubernetes API endpoint), ``policy.kubewatch.KubeProtocolError`` (what the API sent is not the
watch protocol), ``widearea.tsigkey.KeyFileProblem`` (a TSIG key file not understood) and
``mdns.dnspython_check.DnspythonMismatch``. A boundary (the command line,
a reload, a packet handler) catches ``GatewayError`` and turns it into a message, a counter or
a protocol outcome; anything else that escapes is a bug.
"""

from __future__ import annotations


class GatewayError(Exception):
    """An error the gateway raises on purpose (see the module docstring for the kinds)."""
