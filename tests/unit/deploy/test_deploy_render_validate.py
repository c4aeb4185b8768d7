"""The overlays render with the pinned kubectl and every object validates against its schema offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.unit.deploy.conftest import (
    K8S,
    K8S_PYTHON,
    KUBECTL,
    KUBECTL_VERSION,
    REPO,
    Rendered,
    require_tool,
    run,
)

VALIDATOR = REPO / "deploy" / "tools" / "validate_manifests.py"
EXPECTED_KINDS = {
    "Namespace",
    "ServiceAccount",
    "ConfigMap",
    "Deployment",
    "CronJob",
    "Service",
    "Ingress",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
    "Job",
    "Certificate",
    "KafkaTopic",
    "KafkaUser",
}
CUSTOM_KINDS = {"Certificate", "KafkaTopic", "KafkaUser"}
# Objects of namespace `kafka` (Strimzi's): the topics and the policy that guards the brokers.
KAFKA_NAMESPACE = {("KafkaTopic", None), ("NetworkPolicy", "taifa-kafka-brokers")}


def validate(path: Path) -> tuple[int, dict[str, Any]]:
    result = run([require_tool(K8S_PYTHON), VALIDATOR, path], check=False)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_the_rebuild_job_renders_one_job_running_the_projector_rebuild(rendered: dict[str, Rendered]) -> None:
    job = rendered["rebuild-job"]
    assert [o["kind"] for o in job.objects] == ["Job"]
    container = job.objects[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["rebuild", "--from", "event-store"]


def test_the_pinned_kubectl_is_the_one_used() -> None:
    version = run([require_tool(KUBECTL), "version", "--client", "-o", "json"]).stdout
    assert json.loads(version)["clientVersion"]["gitVersion"] == KUBECTL_VERSION


def test_each_overlay_renders_every_kind_the_deployment_needs(overlay: Rendered) -> None:
    kinds = {o["kind"] for o in overlay.objects}
    assert kinds == EXPECTED_KINDS
    deployments = {d["metadata"]["name"] for d in overlay.of_kind("Deployment")}
    assert deployments == {"credential-api", "projector", "relay", "webhooks"}
    in_kafka = [o for o in overlay.objects if {(o["kind"], None), (o["kind"], o["metadata"]["name"])} & KAFKA_NAMESPACE]
    app_objects = [o for o in overlay.objects if o["kind"] != "Namespace" and o not in in_kafka]
    assert {o["metadata"].get("namespace") for o in app_objects} == {"taifa"}
    assert {o["metadata"]["namespace"] for o in in_kafka} == {"kafka"}
    assert len(in_kafka) == len(overlay.of_kind("KafkaTopic")) + 1


def test_every_rendered_object_validates_against_its_schema(rendering: Rendered) -> None:
    status, report = validate(rendering.path)
    failures = {f"{o['kind']}/{o['name']}": o["errors"] for o in report["objects"] if o["errors"]}
    assert status == 0 and not failures, failures
    assert len(report["objects"]) == len(rendering.objects)
    for obj in report["objects"]:
        how = " ".join(obj["validated_with"])
        if obj["kind"] in CUSTOM_KINDS:
            assert "vendored CRD schema" in how, obj
        else:
            assert "kubernetes-validate" in how and "strict" in how, obj
        assert len(obj["validated_with"]) == len(report["versions"]), obj


def test_validation_rejects_misspelt_fields_and_unknown_kinds(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: x, namespace: taifa}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: c, image: "i:1", livenesProbe: {}}]
---
apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaTopic
metadata: {name: t, namespace: kafka}
spec: {partition: 3, replicas: 3}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: c, namespace: taifa}
spec: {secretName: s, issuerRef: {name: x}, privateKey: {algorithm: DSA}}
---
apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaUser
metadata: {name: u, namespace: taifa}
spec:
  authentication: {type: scram-sha-256}
  authorization: {type: simple, acls: [{resource: {type: topic, name: t}, operations: [Wrte]}]}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: s}
"""
    )
    status, report = validate(bad)
    errors = {o["kind"]: " ".join(o["errors"]) for o in report["objects"]}
    assert status == 1
    assert "livenesProbe" in errors["Deployment"]
    assert "partition" in errors["KafkaTopic"]
    assert "DSA" in errors["Certificate"]
    assert "scram-sha-256" in errors["KafkaUser"] and "Wrte" in errors["KafkaUser"]
    assert "no schema" in errors["ServiceMonitor"]


def test_vendored_crd_schemas_name_their_upstream_source() -> None:
    for schema in (K8S / "schemas").glob("*.yaml"):
        header = schema.read_text().split("\ntype:", 1)[0]
        assert "Source:" in header and "commit" in header, schema.name
