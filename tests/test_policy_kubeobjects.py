"""ServicePolicy objects of the Kubernetes API and manifests for it: validated exactly as the
file loader validates a document (bridge/policy/kubeobjects.py), ``check --policies DIR`` for a
GitOps repository's CI, and the ``policies: {kubernetes: ...}`` config key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge import cli
from bridge.config import ConfigError, from_dict
from bridge.policy import PolicyError, parse_policy_text
from bridge.policy.kubeobjects import AnyVlan, authored, check_manifests, validate_object

VLANS = frozenset({"trusted", "iot", "guest"})
API = "mdnsgateway.io/v1alpha1"


@pytest.fixture(autouse=True)
def _no_logging_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.logutil, "setup", lambda level, fmt="text": None)


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``mdns-gateway *argv`` run in this process."""
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def write_config(directory: Path) -> Path:
    vlans = {v: {"interface": f"br{i}", "domain": f"{v}.home.arpa."} for i, v in enumerate(VLANS)}
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump({"vlans": vlans, "dns": {"default_view": "*"}}))
    return path


def policy(name: str, namespace: str | None = "mdns-gateway", **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    body = {"from": ["iot"], "to": ["trusted"], "services": ["_ipp._tcp"], **spec}
    return {"apiVersion": API, "kind": "ServicePolicy", "metadata": meta, "spec": body}


def served(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the API server returns it: server metadata and a status added."""
    out = dict(obj)
    out["metadata"] = {
        **obj["metadata"],
        "uid": "0b4c7d1e-2f3a-4b5c-8d9e-0f1a2b3c4d5e",
        "resourceVersion": "812",
        "generation": 4,
        "creationTimestamp": "2026-12-01T10:00:00Z",
        "managedFields": [{"manager": "kubectl", "operation": "Update"}],
    }
    out["status"] = {"gateways": [{"nodeName": "r1", "conditions": []}]}
    return out


def test_an_object_validates_as_the_file_document_it_was_applied_from() -> None:
    obj = policy("printers", instances={"allow": ["*Printer*"]}, hosts=True)
    from_file = parse_policy_text(yaml.safe_dump(obj), "p.yaml", VLANS)[0]
    verdict = validate_object(served(obj), VLANS, origin="kubernetes API, generation 4")
    assert verdict.accepted and verdict.policy is not None
    assert verdict.policy.name == "mdns-gateway/printers"  # names are unique per namespace
    assert verdict.policy.where == "mdns-gateway/printers (kubernetes API, generation 4)"
    fields = ("from_vlans", "to_vlans", "services", "instances_allow", "hosts", "action")
    assert all(getattr(verdict.policy, f) == getattr(from_file, f) for f in fields)
    assert authored(served(obj)) == obj


def test_an_invalid_object_gets_the_file_loaders_message_starting_with_the_field() -> None:
    obj = policy("cast", **{"from": ["iot", "lab"], "reflect": "yes"})
    verdict = validate_object(served(obj), VLANS)
    assert not verdict.accepted
    with pytest.raises(PolicyError) as from_file:
        parse_policy_text(yaml.safe_dump(obj), "p.yaml", VLANS)
    # the same problems, without the file and document
    assert [p.split(": ", 2)[2] for p in from_file.value.problems] == list(verdict.problems)
    assert verdict.problems[0].startswith("spec.from[1]: unknown VLAN 'lab'")
    assert verdict.problems[1].startswith("spec.reflect: expected true or false")


def test_server_fields_are_set_aside_but_an_authors_unknown_field_is_not() -> None:
    obj = served(policy("x"))
    obj["metadata"]["colour"] = "red"
    obj["extra"] = 1
    problems = validate_object(obj, VLANS).problems
    assert [p.split(":")[0] for p in problems] == ["extra", "metadata.colour"]


def test_any_vlan_takes_every_name() -> None:
    assert validate_object(policy("x", **{"from": ["lab"]}), AnyVlan()).accepted
    assert not validate_object(policy("x", **{"from": ["lab"]}), VLANS).accepted


def write(path: Path, *docs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def test_manifests_multi_document_lists_other_kinds_and_subdirectories(tmp_path: Path) -> None:
    write(
        tmp_path / "a.yaml",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}},
        policy("printers"),
        None,
    )
    write(
        tmp_path / "apps" / "list.yml",
        {"apiVersion": "v1", "kind": "List", "items": [served(policy("cast")), policy("tv")]},
    )
    write(tmp_path / ".git" / "x.yaml", policy("hidden", **{"from": ["nowhere"]}))
    (tmp_path / "README.md").write_text("not yaml: [")
    report = check_manifests(tmp_path, VLANS)
    assert report.problems == []
    assert sorted(p.name for p in report.policies) == [
        "mdns-gateway/cast",
        "mdns-gateway/printers",
        "mdns-gateway/tv",
    ]
    assert report.notes == [f"{tmp_path / 'a.yaml'}: document 1: kind 'ConfigMap' ignored: "
                            "not a ServicePolicy"]  # fmt: skip


def test_manifest_problems_name_file_document_item_and_field(tmp_path: Path) -> None:
    bad = policy("cast", **{"to": ["guests"]})
    write(tmp_path / "l.yaml", {"apiVersion": "v1", "kind": "List", "items": [policy("ok"), bad]})
    write(tmp_path / "m.yaml", policy("ok"))  # the same namespace and name again
    (tmp_path / "n.yaml").write_text("apiVersion: x\nkind: [\n")
    problems = check_manifests(tmp_path, VLANS).problems
    assert problems[0].startswith(
        f"{tmp_path / 'l.yaml'}: document 1 items[1] (cast): spec.to[0]: unknown VLAN 'guests';"
    )
    assert "did you mean 'guest'?" in problems[0]
    assert problems[1].startswith(f"{tmp_path / 'm.yaml'}: document 1 (ok): metadata.name: 'ok'")
    assert "already used in namespace mdns-gateway" in problems[1]
    assert problems[2].startswith(
        f"{tmp_path / 'n.yaml'}: document 1 (unnamed): line 3 column 1: invalid YAML"
    )
    assert len(problems) == 3


def test_check_policies_exit_codes_and_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(
        tmp_path / "ok" / "p.yaml",
        policy("printers"),
        {"kind": "Namespace"},
        {"apiVersion": API, "kind": "ServiceAnnouncement", "metadata": {"name": "a"}},
    )
    config = write_config(tmp_path)
    rc, out, err = run_main(
        capsys, "check", "--config", str(config), "--policies", str(good.parent)
    )
    assert (rc, out.strip()) == (0, f"{good.parent}: OK: 1 ServicePolicy object(s)")
    assert "kind 'Namespace' ignored" in err and "not checked" not in err
    assert "kind ServiceAnnouncement skipped: check --policies validates" in err
    write(tmp_path / "bad" / "p.yaml", policy("printers", **{"from": ["lab"]}))
    rc, out, err = run_main(capsys, "check", "--config", str(config), "--policies",
                            str(tmp_path / "bad"))  # fmt: skip
    assert rc == cli.EXIT_INVALID and "spec.from[0]: unknown VLAN 'lab'" in err
    rc, out, err = run_main(capsys, "check", "--policies", str(tmp_path / "bad"))
    assert rc == cli.EXIT_OK  # no config: VLAN names cannot be known, and it says so
    assert "VLAN names are not checked" in err
    rc, out, err = run_main(capsys, "check", "--policies", str(tmp_path / "none"))
    assert rc == cli.EXIT_INVALID and "cannot read the manifests directory" in err


VLAN_CFG = {"trusted": {"interface": "br10", "domain": "trusted.home.arpa."}}


def test_config_kubernetes_source(tmp_path: Path) -> None:
    raw = {"vlans": VLAN_CFG, "policies": {"kubernetes": {"namespace": "*", "kubeconfig": "kc"}}}
    cfg = from_dict(raw, "g.yaml", base=tmp_path, env={"NODE_NAME": "router-2"})
    assert cfg.policies is None and cfg.kubernetes is not None
    assert (cfg.kubernetes.namespace, cfg.kubernetes.node_name) == ("*", "router-2")
    assert cfg.kubernetes.kubeconfig == tmp_path / "kc"
    raw["policies"]["kubernetes"]["nodeName"] = "router-9"
    assert from_dict(raw, "g.yaml", env={}).kubernetes.node_name == "router-9"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kube", "expect"),
    [
        ({"namespace": "Mdns"}, "g.yaml: policies.kubernetes.namespace: 'Mdns' is not"),
        ({"namespace": "a", "nodename": "x"}, "g.yaml: policies.kubernetes.nodename: unknown"),
        ({"namespace": "a", "nodeName": "Router_1"}, "policies.kubernetes.nodeName: 'Router_1'"),
        ({"namespace": "a", "kubeconfig": 3}, "policies.kubernetes.kubeconfig: 3 is not a file"),
        ("mdns", "g.yaml: policies.kubernetes: 'mdns' is not a mapping"),
    ],
)
def test_config_kubernetes_errors_name_the_key(kube: Any, expect: str) -> None:
    with pytest.raises(ConfigError) as exc:
        from_dict({"vlans": VLAN_CFG, "policies": {"kubernetes": kube}}, "g.yaml", env={})
    assert expect in str(exc.value) and "fix:" in str(exc.value)


def test_check_of_a_config_with_the_kubernetes_source_says_where_policies_come_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NODE_NAME", "router-7")
    config = write_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["policies"] = {"kubernetes": {"namespace": "mdns-gateway"}}
    config.write_text(yaml.safe_dump(data))
    rc, out, _ = run_main(capsys, "check", "--config", str(config))
    assert rc == cli.EXIT_OK
    assert "policies from the Kubernetes API (namespace mdns-gateway, node router-7" in out
