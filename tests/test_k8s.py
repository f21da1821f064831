"""deploy/k8s: the gateway on Kubernetes, validated offline (there is no cluster here).

Every manifest must pass kubernetes-validate's strict schema check (unknown fields
refused), and the parts must fit together and with the image and the node: probes on
/readyz and /healthz, a grace period longer than the preStop pause plus the drain, one
node id per pod, selectors that select the pods, the image's user.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
MANIFESTS = sorted(KUSTOMIZATION["resources"])


def manifest(kind: str) -> dict[str, Any]:
    """The one resource of `kind` among the manifests."""
    found = [
        doc
        for name in MANIFESTS
        for doc in yaml.safe_load_all((K8S / name).read_text())
        if doc and doc["kind"] == kind
    ]
    assert len(found) == 1, (kind, len(found))
    return found[0]


def container() -> dict[str, Any]:
    (gateway,) = manifest("Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(gateway)


def env_value(name: str) -> Any:
    for entry in container()["env"]:
        if entry["name"] == name:
            return entry.get("value", entry.get("valueFrom"))
    return manifest("ConfigMap")["data"].get(name)


def test_the_kustomization_lists_every_manifest() -> None:
    """Guards against a manifest that `kubectl apply -k` would leave out."""
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(MANIFESTS) == on_disk


@pytest.mark.parametrize("name", MANIFESTS)
def test_each_manifest_passes_the_strict_schema(name: str) -> None:
    """Guards against a field Kubernetes would refuse (a typo, a wrong type, a field at
    the wrong level), for the newest Kubernetes version the validator knows."""
    version = kubernetes_validate.latest_version()
    for doc in yaml.safe_load_all((K8S / name).read_text()):
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_pods_are_ready_only_when_they_can_chat_and_live_while_serving() -> None:
    """Guards against a Service sending clients to a pod without Redis or draining
    (readiness must be /readyz), and against restarting every pod during a Redis
    outage (liveness must be /healthz, which stays 200)."""
    gateway = container()
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port = int(env_value("CHAT_PORT"))
    assert gateway["ports"] == [{"name": "http", "containerPort": port}]
    assert env_value("CHAT_HOST") == "0.0.0.0"


def test_a_stopping_pod_has_time_to_pause_and_drain() -> None:
    """Guards against the kubelet killing a pod in the middle of its drain (its clients
    would see a drop instead of a 1001), or the drain starting before the Service has
    stopped sending new clients to it."""
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    pause = float(re.search(r"sleep\((\d+(?:\.\d+)?)\)", command[-1]).group(1))  # type: ignore[union-attr]
    assert pause >= 3
    drain = float(env_value("CHAT_DRAIN_SECONDS"))
    assert pod["terminationGracePeriodSeconds"] >= pause + drain + 10


def test_every_pod_is_a_node_of_its_own() -> None:
    """Guards against pods sharing a node id: each would reap the other's members."""
    assert env_value("CHAT_NODE_ID") == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert str(env_value("CHAT_REDIS_URL")).startswith("redis://")


def test_service_budget_and_autoscaler_point_at_the_gateway_pods() -> None:
    """Guards against selectors that select nothing: a Service with no endpoints, a
    budget that protects no pod, an autoscaler scaling another Deployment."""
    deployment = manifest("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert manifest("Service")["spec"]["selector"].items() <= labels.items()
    budget = manifest("PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["maxUnavailable"] == 1
    target = manifest("HorizontalPodAutoscaler")["spec"]
    assert target["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert target["minReplicas"] >= 2 and target["maxReplicas"] > target["minReplicas"]


def test_the_pods_run_as_the_images_user_without_privileges() -> None:
    """Guards against a pod spec that runs as root or as a user the image lacks."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    pod = manifest("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert (str(pod["runAsUser"]), str(pod["runAsGroup"])) == user
    security = container()["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    mounts = {mount["mountPath"] for mount in container()["volumeMounts"]}
    assert "/tmp" in mounts  # the image's WORKDIR stays writable
