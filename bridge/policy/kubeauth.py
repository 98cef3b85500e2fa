"""Where the Kubernetes API is and how to authenticate: a kubeconfig file or the in-cluster
service account, resolved to one :class:`Endpoint` (server URL, TLS context, bearer token).

Written here rather than taken from kubernetes-asyncio: the gateway needs only the server, its
CA and a token or client certificate (what a kubeconfig for a service account or an admin holds),
and its config loader would bring the whole generated client with it. What a kubeconfig can say
and this does not do (``exec`` credential plugins, ``auth-provider``, basic auth) is refused with
the key named. A token file is read again for every connection: in-cluster tokens are rotated
(bound service account tokens expire within the hour).
"""

from __future__ import annotations

import base64
import binascii
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from ..errors import GatewayError

#: the service account files a pod gets (Kubernetes docs, "Accessing the API from a Pod")
SERVICE_ACCOUNT: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MAX_KUBECONFIG_BYTES: Final = 1 << 20  # a kubeconfig is a few KB; a wrong path is not read whole


class KubeConfigError(GatewayError):
    """No usable Kubernetes API endpoint: the message names the file, the key and the fix."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The API server and the credentials for it."""

    server: str  # scheme://host:port, no trailing slash
    ssl: ssl.SSLContext | None  # None for http:// (the tests' stand-in)
    source: str  # where it came from, for messages
    token: str | None = None
    token_file: Path | None = None  # read again for every connection

    def headers(self) -> dict[str, str]:
        """Request headers with the current bearer token. OSError if the token file is gone."""
        token = self.token
        if self.token_file is not None:
            token = self.token_file.read_text().strip()
        return {"Authorization": f"Bearer {token}"} if token else {}


def resolve(kubeconfig: Path | None, env: Mapping[str, str]) -> Endpoint:
    """The endpoint of ``kubeconfig``; without one, the in-cluster service account, else
    $KUBECONFIG, else ~/.kube/config. :class:`KubeConfigError` when none is usable."""
    if kubeconfig is not None:
        return from_kubeconfig(kubeconfig)
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if host and port and (SERVICE_ACCOUNT / "token").exists():
        return in_cluster(host, port)
    path = env.get("KUBECONFIG", "").split(":")[0]
    if path:
        return from_kubeconfig(Path(path))
    home = env.get("HOME")
    if home and (Path(home) / ".kube" / "config").exists():
        return from_kubeconfig(Path(home) / ".kube" / "config")
    raise KubeConfigError(
        "no Kubernetes API to read policies from: not in a pod (no KUBERNETES_SERVICE_HOST and "
        f"{SERVICE_ACCOUNT}/token), no $KUBECONFIG, no ~/.kube/config; fix: set "
        "policies.kubernetes.kubeconfig in the config, or run in the cluster"
    )


def in_cluster(host: str, port: str) -> Endpoint:
    """The service account a pod is given: the API's service address, its CA, a token."""
    host = f"[{host}]" if ":" in host else host
    context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
    return Endpoint(
        f"https://{host}:{port}",
        context,
        "the in-cluster service account",
        token_file=SERVICE_ACCOUNT / "token",
    )


def from_kubeconfig(path: Path) -> Endpoint:
    """The current context's cluster and user of a kubeconfig file."""
    try:
        with path.open("rb") as f:
            data = yaml.safe_load(f.read(MAX_KUBECONFIG_BYTES + 1))
    except OSError as exc:
        raise KubeConfigError(
            f"{path}: cannot read the kubeconfig: {exc.strerror or exc}; fix: check "
            "policies.kubernetes.kubeconfig"
        ) from None
    except yaml.YAMLError as exc:
        raise KubeConfigError(f"{path}: not valid YAML ({exc}); fix: correct it") from None
    return _endpoint(data, path)


def _endpoint(data: Any, path: Path) -> Endpoint:
    def bad(key: str, problem: str, fix: str) -> KubeConfigError:
        return KubeConfigError(f"{path}: {key}: {problem}; fix: {fix}")

    if not isinstance(data, dict):
        raise bad("(top level)", "not a kubeconfig mapping", "give a kubeconfig file")
    current = data.get("current-context")
    context = _named(data, "contexts", current, path).get("context") or {}
    cluster = _named(data, "clusters", context.get("cluster"), path).get("cluster") or {}
    user = _named(data, "users", context.get("user"), path, required=False).get("user") or {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise bad("clusters[].cluster.server", f"{server!r} is not an http(s) URL", "set it")
    for key in ("exec", "auth-provider", "username"):
        if user.get(key) is not None:
            raise bad(
                f"users[].user.{key}",
                "not supported by the gateway",
                "give the gateway a service account token (token or tokenFile) or a client "
                "certificate",
            )
    base = path.parent
    context_ssl: ssl.SSLContext | None = None
    if server.startswith("https://"):
        context_ssl = _tls(cluster, user, base, bad)
    token_file = user.get("tokenFile")
    return Endpoint(
        server.rstrip("/"),
        context_ssl,
        f"kubeconfig {path} (context {current})",
        token=user.get("token"),
        token_file=None if token_file is None else base / token_file,
    )


def _named(
    data: Mapping[str, Any], section: str, name: object, path: Path, *, required: bool = True
) -> Mapping[str, Any]:
    for entry in data.get(section) or ():
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    if not required:
        return {}
    raise KubeConfigError(
        f"{path}: {section}: no entry named {name!r} (from current-context); fix: set "
        "current-context to a context whose cluster and user are defined"
    )


def _tls(
    cluster: Mapping[str, Any], user: Mapping[str, Any], base: Path, bad: Any
) -> ssl.SSLContext:
    ca_data = _decoded(cluster, "certificate-authority-data", bad)
    ca_file = cluster.get("certificate-authority")
    context = ssl.create_default_context(
        cafile=None if ca_file is None else str(base / ca_file),
        cadata=None if ca_data is None else ca_data.decode("ascii", "replace"),
    )
    if cluster.get("insecure-skip-tls-verify") is True:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert, key = user.get("client-certificate"), user.get("client-key")
    cert_data = _decoded(user, "client-certificate-data", bad)
    key_data = _decoded(user, "client-key-data", bad)
    if cert_data is not None and key_data is not None:
        # ssl loads a certificate chain from files only: a private directory, gone at once
        with tempfile.TemporaryDirectory(prefix="mdns-gateway-kube-") as tmp:
            (Path(tmp) / "c").write_bytes(cert_data)
            (Path(tmp) / "k").write_bytes(key_data)
            context.load_cert_chain(str(Path(tmp) / "c"), str(Path(tmp) / "k"))
    elif cert is not None and key is not None:
        context.load_cert_chain(str(base / cert), str(base / key))
    return context


def _decoded(section: Mapping[str, Any], key: str, bad: Any) -> bytes | None:
    value = section.get(key)
    if value is None:
        return None
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise bad(key, "not base64", "paste the base64 of the PEM file") from None
