"""What deploys the gateway: the systemd unit in deploy/systemd (valid for systemd, and
hardened), the kustomize base and overlay in deploy/kubernetes (they build, every object
validates offline against the Kubernetes schemas, the config they carry passes check, and the
DaemonSet asks for what the gateway needs and no more) and the Dockerfile they run.

Kubernetes objects validate with kubernetes-validate's strict schemas (unknown fields are
errors, as with kubectl's strict field validation); ServicePolicy objects with
``mdns-gateway check --policies``, which validates them as the watch does (and
tests/test_policy_crd.py keeps that the CRD's own validation); the PodMonitor, whose CRD
belongs to the Prometheus Operator and is not here, by the fields that must agree with the
DaemonSet.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from bridge import cli, config
from tests.support.deploy import (
    BUILDS,
    KUBE,
    OVERLAY,
    ROOT,
    SECRET_TOKEN,
    WATCHED,
    arg,
    args,
    configmap_volume,
    container,
    one,
    rendered,
)

UNIT = ROOT / "deploy" / "systemd" / "mdns-gateway.service"
INSTALLED = "/opt/mdns-gateway/bin/mdns-gateway"
KUBERNETES_VERSION = "1.32"  # the schemas objects are checked against (kubectl's own version)


def _unit_here(tmp_path: Path) -> Path:
    """The unit with its ExecStart pointing at this interpreter (systemd checks it exists)."""
    text = UNIT.read_text()
    assert INSTALLED in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(INSTALLED, f"{sys.executable} -m bridge"))
    return unit


def test_unit_has_the_hardening_of_a_network_daemon() -> None:
    keys = dict(
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert keys["NoNewPrivileges"] == "yes"
    assert keys["ProtectSystem"] == "strict" and keys["ProtectHome"] == "yes"
    assert keys["DynamicUser"] == "yes"
    assert keys["CapabilityBoundingSet"] == keys["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert "/etc/mdns-gateway/config.yaml" in keys["ExecStart"]
    assert keys["ExecStartPre"].split()[1:3] == ["check", "--config"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    res = subprocess.run(
        ["systemd-analyze", "verify", str(_unit_here(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (res.returncode, res.stderr) == (0, ""), res.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_rates_the_unit_exposure_low(tmp_path: Path) -> None:
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(_unit_here(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if res.returncode != 0 and "offline" in res.stderr:
        pytest.skip(f"this systemd-analyze cannot rate a unit file offline: {res.stderr.strip()}")
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", res.stdout)
    assert m is not None, res.stdout + res.stderr
    assert float(m.group(1)) <= 2.0  # systemd's scale: 0 (locked down) to 10 ("UNSAFE")


# --- Kubernetes ------------------------------------------------------------------------------


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_the_build_renders_the_whole_deployment(build: str) -> None:
    kinds = sorted(o["kind"] for o in rendered(build))
    expected = [
        "ConfigMap",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "DaemonSet",
        "Namespace",
        "PodMonitor",
        "ServiceAccount",
    ]
    expected += (
        ["ClusterRole", "ClusterRoleBinding"] if WATCHED[build] == "*" else ["Role", "RoleBinding"]
    )
    if build == "three-vlan-router":
        expected += ["ServicePolicy"] * 3
    assert kinds == sorted(expected)
    cluster_scoped = ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding")
    for o in rendered(build):
        if o["kind"] not in cluster_scoped:
            assert o["metadata"]["namespace"] == "mdns-gateway", o["metadata"]


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_every_object_validates_against_the_kubernetes_schemas(build: str) -> None:
    ours = ("mdnsgateway.io/v1alpha1", "monitoring.coreos.com/v1")  # tests of their own below
    checked = [o for o in rendered(build) if o["apiVersion"] not in ours]
    for o in checked:
        kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
    assert len(checked) == 8


def test_the_overlays_service_policies_pass_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = [o for o in rendered("three-vlan-router") if o["kind"] == "ServicePolicy"]
    assert {p["metadata"]["namespace"] for p in policies} == {"mdns-gateway"}
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "rendered.yaml").write_text(yaml.safe_dump_all(policies))
    cfg = configmap_volume("three-vlan-router", tmp_path)
    argv = ["check", "--config", str(cfg), "--policies", str(tmp_path / "policies")]
    assert cli.main(argv) == cli.EXIT_OK, capsys.readouterr().err
    assert f"{len(policies)} ServicePolicy object(s)" in capsys.readouterr().out


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_kustomize_piped_into_kubernetes_validate_strict_passes(build: str) -> None:
    """The issue's own check, as an operator's CI would run it."""
    built = subprocess.run(
        ["kubectl", "kustomize", str(BUILDS[build])],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    res = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBERNETES_VERSION, "-"],
        input=built.stdout,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert out.count(" passed for resource ") == 8, out
    unchecked = [line for line in out.splitlines() if not line.startswith("INFO ")]
    schemas_elsewhere = ("kind PodMonitor ", "kind ServicePolicy ")  # checked above
    assert all(any(k in line for k in schemas_elsewhere) for line in unchecked), out


def test_strict_validation_would_catch_a_misspelt_field() -> None:
    ds = one("base", "DaemonSet")
    bad = yaml.safe_load(yaml.safe_dump(ds))
    bad["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    ("copy", "source"),
    [
        ("crd-servicepolicies.yaml", "crd.yaml"),
        ("crd-serviceannouncements.yaml", "crd-announcement.yaml"),
    ],
)
def test_the_crds_are_those_in_policies(copy: str, source: str) -> None:
    """Kustomize reads no file outside the directory it builds: the base holds copies."""
    here, there = KUBE / "base" / copy, ROOT / "policies" / source
    assert here.read_text() == there.read_text(), (
        f"{here.relative_to(ROOT)} differs from {there.relative_to(ROOT)}: "
        f"cp {there.relative_to(ROOT)} {here.relative_to(ROOT)}"
    )


def test_the_overlays_policies_are_the_example_routers() -> None:
    copy = OVERLAY / "policies.yaml"
    source = ROOT / "examples" / "router-policies" / "router.yaml"
    assert copy.read_text() == source.read_text(), (
        f"cp {source.relative_to(ROOT)} {copy.relative_to(ROOT)}"
    )


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_rbac_is_exactly_what_the_gateway_asks_for(build: str) -> None:
    """The same rules whether namespaced (a Role) or for every namespace (a ClusterRole,
    bound cluster-wide): the gateway asks for nothing more in either case."""
    kind = "ClusterRole" if WATCHED[build] == "*" else "Role"
    role = one(build, kind)
    rules = sorted(
        (tuple(r["apiGroups"]), tuple(sorted(r["resources"])), tuple(sorted(r["verbs"])))
        for r in role["rules"]
    )
    assert rules == [
        (("",), ("events",), ("create",)),
        (
            ("mdnsgateway.io",),
            ("serviceannouncements", "servicepolicies"),
            ("get", "list", "watch"),
        ),
        (("mdnsgateway.io",), ("servicepolicies/status",), ("patch",)),
    ]
    binding = one(build, f"{kind}Binding")
    sa = one(build, "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": kind,
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "mdns-gateway"}
    ]
    pod = one(build, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_the_configmaps_config_passes_check(
    build: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NODE_NAME", "router1")  # as the DaemonSet sets it (downward API)
    path = configmap_volume(build, tmp_path)
    assert cli.main(["check", "--config", str(path)]) == cli.EXIT_OK, capsys.readouterr().err
    cfg = config.load(path)
    assert cfg.policies is None  # nothing read from the mount: ServicePolicy objects
    assert cfg.kubernetes is not None and cfg.kubernetes.namespace == WATCHED[build]
    assert cfg.kubernetes.node_name == "router1"  # its own entry in each policy's status


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_the_daemonset_runs_on_the_router_nodes_network(build: str) -> None:
    pod = one(build, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["nodeSelector"] == {"mdnsgateway.io/router": "true"}
    env = {e["name"]: e for e in container(build)["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["HOST_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    # the DaemonSet's arguments are the command line's own (Kubernetes expands $(HOST_IP))
    argv = [a.replace("$(HOST_IP)", "192.0.2.1") for a in args(build)]
    parsed = cli.build_parser().parse_args(argv)
    assert parsed.func is cli.cmd_run and parsed.http_listen == "192.0.2.1"


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_the_container_is_unprivileged(build: str) -> None:
    pod = one(build, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    sc = container(build)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    # mDNS (5353), the DNS and view ports and HTTP are all above 1024; joining groups needs none
    assert sc["capabilities"] == {"drop": ["ALL"]}


def test_no_listener_needs_a_privileged_port(tmp_path: Path) -> None:
    for build in BUILDS:
        cfg = config.load(configmap_volume(build, tmp_path / build))
        ports = [p for _, p in cfg.dns.listen]
        ports += [p for addrs in cfg.dns.view_listeners.values() for _, p in addrs]
        assert cfg.http.listen is not None
        assert min([*ports, cfg.http.listen[1]]) > 1023, build


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_probes_and_scrapes_reach_the_gateways_http_port(build: str, tmp_path: Path) -> None:
    cfg = config.load(configmap_volume(build, tmp_path))
    c = container(build)
    (port,) = c["ports"]
    assert cfg.http.listen is not None
    assert port == {"name": "metrics", "containerPort": cfg.http.listen[1], "protocol": "TCP"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    monitor = one(build, "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    labels = one(build, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert set(monitor["spec"]) == {"selector", "podMetricsEndpoints"}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    auth = {"type": "Bearer", "credentials": {"name": "mdns-gateway-http-token", "key": "token"}}
    assert endpoint == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "30s",
        "authorization": auth,
    }
    # the token the scrape sends is the one the gateway reads: the same Secret, mounted where
    # http.token_file points, readable by the gateway's group only
    pod = one(build, "DaemonSet")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == auth["credentials"]["name"]
    assert volume["secret"]["defaultMode"] == 0o440 and pod["securityContext"]["fsGroup"] == 65532
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == volume["name"]]
    assert cfg.http.token_file is not None
    assert str(cfg.http.token_file).endswith(f"{mount['mountPath']}/{auth['credentials']['key']}")
    assert cfg.http.token == SECRET_TOKEN


def _quantity(q: str) -> float:
    units = {"Mi": 2**20, "Gi": 2**30, "m": 1e-3}
    for suffix, factor in units.items():
        if q.endswith(suffix):
            return float(q[: -len(suffix)]) * factor
    return float(q)


def test_resources_cover_the_measured_figures() -> None:
    res = container("base")["resources"]
    mb = 1e6
    # README, Performance: 51.4 MB RSS with 1,000 services (a large home), 80.5 MB with 10,000
    # services and every name asked; the limit leaves the rest of cache.max_records room
    assert 51.4 * mb <= _quantity(res["requests"]["memory"]) < 80.5 * mb
    assert _quantity(res["limits"]["memory"]) >= 2 * 80.5 * mb
    assert _quantity(res["requests"]["cpu"]) <= _quantity(res["limits"]["cpu"]) == 1.0
    text = (ROOT / "README.md").read_text()  # its Performance table
    for figure in ("30.0 MB", "51.4 MB", "75.3 MB", "80.5 MB"):
        assert figure in text  # the figures the requests were taken from are still the ones


def test_the_image_runs_the_config_the_daemonset_mounts() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if not line.startswith("#")]
    cmd = [line for line in lines if line.startswith("CMD ")]
    assert cmd == ['CMD ["run", "--config", "/etc/mdns-gateway/config.yaml"]']
    assert arg("base", "--config") == "/etc/mdns-gateway/config.yaml"
    user = [line for line in lines if line.startswith("USER ")]
    uid = one("base", "DaemonSet")["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert user == [f"USER {uid}:{uid}"]
    # nothing of the image's own under the config mount: the ConfigMap would hide it
    assert not [line for line in lines if re.match(r"(COPY|ADD) .* /etc/mdns-gateway", line)]


# --- --http-listen: HTTP on the node's address -----------------------------------------------


def _cfg() -> config.Config:
    return config.from_dict(
        {"vlans": {"a": {"interface": "nosuch0"}}, "dns": {"listen": ["127.0.0.1:5300"]}}, "t"
    )


@pytest.mark.parametrize(
    ("text", "listen"),
    [
        ("192.0.2.1", ("192.0.2.1", 9353)),
        ("192.0.2.1:9400", ("192.0.2.1", 9400)),
        ("2001:db8::1", ("2001:db8::1", 9353)),
        ("[2001:db8::1]:9400", ("2001:db8::1", 9400)),
    ],
)
def test_http_listen_takes_an_address_and_keeps_the_port(
    text: str, listen: tuple[str, int]
) -> None:
    assert config.with_http_listen(_cfg(), text).http.listen == listen


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0.0.0.0", "wildcard"),
        ("router", "not an IP address"),
        ("127.0.0.1:5300", "also a DNS listener"),
    ],
)
def test_http_listen_refuses_what_http_listen_refuses(text: str, problem: str) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.with_http_listen(_cfg(), text)
    assert info.value.problems[0].startswith("--http-listen: ") and problem in str(info.value)


def test_run_reports_a_bad_http_listen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("vlans: {a: {interface: nosuch0}}\n")
    assert cli.main(["run", "--config", str(path), "--http-listen", "$(HOST_IP)"]) == 1
    assert "--http-listen: " in capsys.readouterr().err
