"""Where the Kubernetes API is and how the gateway authenticates (bridge/policy/kubeauth.py):
kubeconfig contexts, tokens, token files read again, TLS with the cluster's CA (a real TLS
handshake with the stand-in API server, certificates made here with openssl), the in-cluster
service account, and what is refused with the key named."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bridge.policy import kubeauth
from bridge.policy.kubeauth import KubeConfigError, from_kubeconfig, resolve
from bridge.policy.kubesource import KubePolicySource
from tests.support.kubeapi import KubeApi


def kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    path.write_text(
        json.dumps(
            {
                "current-context": "c",
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                "clusters": [{"name": "k", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
            }
        )
    )
    return path


def test_token_and_token_file(tmp_path: Path) -> None:
    ep = from_kubeconfig(kubeconfig(tmp_path / "kc", {"server": "http://127.0.0.1:1/"},
                                    {"token": "abc"}))  # fmt: skip
    assert (ep.server, ep.ssl, ep.headers()) == (
        "http://127.0.0.1:1",
        None,
        {"Authorization": "Bearer abc"},
    )
    (tmp_path / "tok").write_text("first\n")
    ep = from_kubeconfig(
        kubeconfig(tmp_path / "kc", {"server": "http://h:1"}, {"tokenFile": "tok"})
    )
    assert ep.headers() == {"Authorization": "Bearer first"}
    (tmp_path / "tok").write_text("rotated\n")  # bound service account tokens rotate
    assert ep.headers() == {"Authorization": "Bearer rotated"}


@pytest.mark.parametrize(
    ("cluster", "user", "expect"),
    [
        ({"server": "h:1"}, {}, "clusters[].cluster.server: 'h:1' is not an http(s) URL"),
        ({"server": "http://h"}, {"exec": {"command": "x"}}, "users[].user.exec: not supported"),
        ({"server": "http://h"}, {"auth-provider": {}}, "users[].user.auth-provider: not"),
        ({"server": "https://h", "certificate-authority-data": "@@"}, {}, "not base64"),
    ],
)
def test_what_is_refused_names_the_key(
    tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], expect: str
) -> None:
    with pytest.raises(KubeConfigError) as exc:
        from_kubeconfig(kubeconfig(tmp_path / "kc", cluster, user))
    assert expect in str(exc.value) and str(tmp_path / "kc") in str(exc.value)
    assert "fix:" in str(exc.value)


def test_missing_file_context_and_nothing_configured(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="cannot read the kubeconfig"):
        from_kubeconfig(tmp_path / "nope")
    (tmp_path / "kc").write_text(json.dumps({"current-context": "x", "contexts": []}))
    with pytest.raises(KubeConfigError, match="contexts: no entry named 'x'"):
        from_kubeconfig(tmp_path / "kc")
    with pytest.raises(KubeConfigError, match="no Kubernetes API to read policies from"):
        resolve(None, {"HOME": str(tmp_path)})
    kc = kubeconfig(tmp_path / "env-kc", {"server": "http://h:2"}, {"token": "t"})
    assert resolve(None, {"KUBECONFIG": f"{kc}:/other"}).server == "http://h:2"


def test_in_cluster_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, _ = make_ca(tmp_path)
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("pod-token")
    (sa / "ca.crt").write_bytes(cert.read_bytes())
    monkeypatch.setattr(kubeauth, "SERVICE_ACCOUNT", sa)
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    ep = resolve(None, env)
    assert ep.server == "https://[fd00::1]:443" and isinstance(ep.ssl, ssl.SSLContext)
    assert ep.headers() == {"Authorization": "Bearer pod-token"}


def make_ca(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the API server's, and its own CA)."""
    cert, key = tmp / "server.crt", tmp / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=kube-apiserver",
         "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("client_cert", [False, True], ids=["token", "client-certificate"])
def test_tls_with_the_clusters_ca_lists_from_the_stand_in(
    tmp_path: Path, client_cert: bool
) -> None:
    """A real TLS handshake: the CA from certificate-authority-data verifies the server; with
    a client certificate (as -data, loaded from a private temporary directory) the server
    verifies the gateway too."""
    cert, key = make_ca(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(cert), str(key))
    ca_data = base64.b64encode(cert.read_bytes()).decode()
    user: dict[str, Any] = {"token": "lab-token"}
    if client_cert:
        client = tmp_path / "client"
        client.mkdir()
        ccert, ckey = make_ca(client)
        server_ctx.verify_mode = ssl.CERT_REQUIRED
        server_ctx.load_verify_locations(str(ccert))
        user["client-certificate-data"] = base64.b64encode(ccert.read_bytes()).decode()
        user["client-key-data"] = base64.b64encode(ckey.read_bytes()).decode()
    seen: list[Any] = []

    async def main() -> None:
        api = KubeApi(ssl_context=server_ctx)
        await api.start()
        spec = {"from": ["iot"], "to": ["trusted"], "services": ["_ipp._tcp"]}
        api.put({"apiVersion": "mdnsgateway.io/v1alpha1", "kind": "ServicePolicy",
                 "metadata": {"name": "p", "namespace": "lab"}, "spec": spec})  # fmt: skip
        kc = kubeconfig(
            tmp_path / "kc",
            {"server": f"https://127.0.0.1:{api.port}", "certificate-authority-data": ca_data},
            user,
        )
        src = KubePolicySource(
            "lab", "r1", kc, {"iot", "trusted"}, lambda e, p: seen.append(e), env={}
        )
        src.start()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not seen and loop.time() < deadline:
                await asyncio.sleep(0.02)
        finally:
            await src.stop()
            await api.stop()

    asyncio.run(main())
    assert seen and [p.name for p in seen[-1].policies] == ["lab/p"]


def test_tls_refuses_a_server_the_ca_did_not_sign(tmp_path: Path) -> None:
    cert, key = make_ca(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    other_cert, _ = make_ca(other)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(cert), str(key))

    async def main() -> str | None:
        api = KubeApi(ssl_context=server_ctx)
        await api.start()
        kc = kubeconfig(
            tmp_path / "kc",
            {"server": f"https://127.0.0.1:{api.port}", "certificate-authority": str(other_cert)},
            {"token": "lab-token"},
        )
        src = KubePolicySource("lab", "r1", kc, {"iot"}, lambda e, p: None, env={})
        src.start()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not src.errors["connection"] and loop.time() < deadline:
                await asyncio.sleep(0.02)
            return src.not_ready()
        finally:
            await src.stop()
            await api.stop()

    reason = asyncio.run(main())
    assert reason is not None and "certificate verify failed" in reason
