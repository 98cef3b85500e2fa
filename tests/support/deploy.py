"""deploy/kubernetes as the cluster would see it: rendered by kubectl kustomize, and a
ConfigMap volume written the way the kubelet writes it (tests/test_deploy.py and the lab)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAY = KUBE / "overlays" / "three-vlan-router"
EVERY_NAMESPACE = KUBE / "overlays" / "every-namespace"
BUILDS = {"base": KUBE, "three-vlan-router": OVERLAY, "every-namespace": EVERY_NAMESPACE}
WATCHED = {"base": "mdns-gateway", "three-vlan-router": "mdns-gateway", "every-namespace": "*"}


@functools.cache
def rendered(build: str) -> tuple[dict[str, Any], ...]:
    """``kubectl kustomize`` of a build (a key of BUILDS), as objects."""
    res = subprocess.run(
        ["kubectl", "kustomize", str(BUILDS[build])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return tuple(d for d in yaml.safe_load_all(res.stdout) if d is not None)


def one(build: str, kind: str) -> dict[str, Any]:
    found = [o for o in rendered(build) if o["kind"] == kind]
    assert len(found) == 1, (build, kind, [o["metadata"]["name"] for o in found])
    return found[0]


def container(build: str) -> dict[str, Any]:
    """The DaemonSet's one container."""
    pod = one(build, "DaemonSet")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return dict(pod["containers"][0])


def args(build: str) -> list[str]:
    return [str(a) for a in container(build)["args"]]


def arg(build: str, flag: str) -> str:
    argv = args(build)
    return argv[argv.index(flag) + 1]


SECRET_TOKEN = "deploy-test-token-0123456789abcdef"  # what the Secret volume holds


def configmap_volume(build: str, root: Path) -> Path:
    """The DaemonSet's config volume under ``root`` as the kubelet writes a ConfigMap volume
    (each key a symlink through ``..data`` into a timestamped directory), and its Secret
    volumes (the HTTP token, holding ``SECRET_TOKEN``); the config's paths into those mounts
    are rewritten to lie under ``root``. Returns the path the container's ``--config`` names,
    under ``root``."""
    pod = one(build, "DaemonSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = container(build)["volumeMounts"]
    (mount,) = [m for m in mounts if "configMap" in volumes[m["name"]]]
    cm = one(build, "ConfigMap")
    assert volumes[mount["name"]]["configMap"]["name"] == cm["metadata"]["name"]  # generated
    secrets = [m for m in mounts if "secret" in volumes[m["name"]]]
    for m in secrets:
        secret_dir = root / m["mountPath"].lstrip("/")
        secret_dir.mkdir(parents=True)
        (secret_dir / "token").write_text(SECRET_TOKEN)
    top = root / mount["mountPath"].lstrip("/")
    data = top / "..2026_12_02_00_00_00.000000001"
    data.mkdir(parents=True)
    for key, text in cm["data"].items():
        for m in secrets:
            text = text.replace(m["mountPath"] + "/", f"{root}{m['mountPath']}/")
        (data / key).write_text(text)
        (top / key).symlink_to(Path("..data") / key)
    (top / "..data").symlink_to(data.name)
    path = Path(arg(build, "--config"))
    assert path.parent == Path(mount["mountPath"])
    return root / path.relative_to("/")
