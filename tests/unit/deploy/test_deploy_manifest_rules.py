"""Rules of the manifests that no generic scanner knows: who may talk to whom, topic layout, scaling,
disruption budgets and the shape of the images."""

from __future__ import annotations

import re
from typing import Any

from taifa_events import topics
from taifa_localstack import TOPIC_PARTITIONS

from tests.unit.deploy.conftest import REPO, Rendered, containers, pod_specs, pod_template
from tests.unit.deploy.services_under_deploy import SERVICES

DNS = {("UDP", 53), ("TCP", 53)}
POSTGRES = {("TCP", 5432)}
REDIS = {("TCP", 6379)}
KAFKA = {("TCP", 9093)}  # listener `tls` of the Strimzi cluster: SCRAM-SHA-512 over TLS


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics for matchLabels and matchExpressions (In/NotIn/Exists)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        value, op = labels.get(expr["key"]), expr["operator"]
        if (
            (op == "In" and value not in expr["values"])
            or (op == "NotIn" and value in expr["values"])
            or (op == "Exists" and value is None)
            or (op == "DoesNotExist" and value is not None)
        ):
            return False
    return True


def pod_labels(overlay: Rendered, workload: str) -> dict[str, str]:
    kind = {"taifa-migrations": "Job", "taifa-domain-recheck": "CronJob"}.get(workload, "Deployment")
    return dict(pod_template(overlay.get(kind, workload))["metadata"]["labels"])


def allowed(overlay: Rendered, workload: str, direction: str) -> set[tuple[str, int | str]]:
    """The union of (protocol, port) a workload's pods may use in `direction` (egress/ingress); a range of ports
    is "first-last"."""
    labels = pod_labels(overlay, workload)
    ports: set[tuple[str, int | str]] = set()
    for policy in overlay.of_kind("NetworkPolicy"):
        spec = policy["spec"]
        if selects(spec["podSelector"], labels):
            for rule in spec.get(direction) or []:
                assert rule.get("ports"), f"{policy['metadata']['name']}: a rule without ports allows every port"
                ports.update(
                    (p.get("protocol", "TCP"), f"{p['port']}-{p['endPort']}" if "endPort" in p else p["port"])
                    for p in rule["ports"]
                )
    return ports


def test_everything_is_denied_unless_a_policy_allows_it(overlay: Rendered) -> None:
    deny = overlay.get("NetworkPolicy", "default-deny-all")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert not deny.get("ingress") and not deny.get("egress")


def test_each_workload_reaches_only_its_dependencies(overlay: Rendered) -> None:
    upstream = {("TCP", 1025)} if overlay.overlay == "dev" else {("TCP", 25), ("TCP", 587)}
    assert allowed(overlay, "relay", "egress") == DNS | REDIS | upstream
    assert allowed(overlay, "projector", "egress") == DNS | KAFKA | POSTGRES | REDIS
    assert allowed(overlay, "credential-api", "egress") == DNS | KAFKA | POSTGRES | REDIS
    # Endpoints: HTTPS on any port (docs/api.md), to public addresses only (the ipBlock's except lists).
    assert allowed(overlay, "webhooks", "egress") == DNS | KAFKA | POSTGRES | {("TCP", "1-65535")}
    assert allowed(overlay, "taifa-migrations", "egress") == DNS | POSTGRES
    assert allowed(overlay, "taifa-domain-recheck", "egress") == DNS | POSTGRES


def test_each_workload_accepts_only_its_listeners(overlay: Rendered) -> None:
    relay = overlay.config_map_data(
        overlay.get("Deployment", "relay")["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"][
            "name"
        ]
    )
    smtp = {("TCP", int(relay["TAIFA_RELAY_SUBMISSION_PORT"])), ("TCP", int(relay["TAIFA_RELAY_SMTPS_PORT"]))}
    assert allowed(overlay, "relay", "ingress") == smtp | {("TCP", int(relay["TAIFA_RELAY_HEALTH_PORT"]))}
    assert allowed(overlay, "credential-api", "ingress") == {("TCP", 8080)}
    assert allowed(overlay, "projector", "ingress") == {("TCP", 9102)}
    assert allowed(overlay, "webhooks", "ingress") == {("TCP", 9103)}
    assert allowed(overlay, "taifa-migrations", "ingress") == set()
    assert allowed(overlay, "taifa-domain-recheck", "ingress") == set()


def test_verified_domains_are_rechecked_every_hour_one_run_at_a_time(overlay: Rendered) -> None:
    cron = overlay.get("CronJob", "taifa-domain-recheck")
    assert cron["spec"]["schedule"].split()[1:] == ["*", "*", "*", "*"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] < 3600
    (container,) = pod_template(cron)["spec"]["containers"]
    assert (container["command"], container["args"]) == (["taifa-admin"], ["domain", "recheck"])


def test_cert_managers_http01_solver_for_the_api_certificate_is_reachable_from_ingress_nginx_only(
    overlay: Rendered,
) -> None:
    # deploy/README.md: the API's name may use HTTP-01 (ingress-shim); cert-manager's solver pod, started in this
    # namespace and listening on 8089, was isolated by default-deny-all: the certificate could never be issued.
    solver = {"acme.cert-manager.io/http01-solver": "true"}
    admitted = []
    for policy in overlay.of_kind("NetworkPolicy"):
        spec = policy["spec"]
        if selects(spec["podSelector"], solver) and spec["podSelector"]:
            admitted += [(peer, rule["ports"]) for rule in spec.get("ingress") or [] for peer in rule["from"]]
    ingress_nginx = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    assert admitted == [(ingress_nginx, [{"protocol": "TCP", "port": 8089}])]


def test_the_kafka_egress_port_is_the_bootstrap_port(overlay: Rendered) -> None:
    for _, spec in pod_specs(overlay.objects):
        for container in containers(spec):
            for source in container.get("envFrom") or []:
                data = overlay.config_map_data(source["configMapRef"]["name"])
                if "TAIFA_KAFKA_BOOTSTRAP" in data:
                    ports = {("TCP", int(hp.rsplit(":", 1)[1])) for hp in data["TAIFA_KAFKA_BOOTSTRAP"].split(",")}
                    assert ports == KAFKA


def test_the_kafka_topics_are_the_event_library_topics_and_their_dead_letters(overlay: Rendered) -> None:
    kafka_topics = {t["metadata"]["name"]: t for t in overlay.of_kind("KafkaTopic")}
    data_and_usage = (*topics.ALL_TOPICS, topics.USAGE_TOPIC)
    expected = set(data_and_usage) | {topics.dead_letter_topic(t) for t in data_and_usage}
    assert set(kafka_topics) == expected
    projector_replicas = overlay.get("Deployment", "projector")["spec"]["replicas"]
    for name, topic in kafka_topics.items():
        spec = topic["spec"]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "taifa"  # the Topic Operator's cluster
        assert spec["config"]["cleanup.policy"] == "delete"  # compaction by domain id would lose history
        if name in topics.ALL_TOPICS:
            # The whole history stays replayable: a Kafka rebuild or a long-stopped projector never meets a gap.
            assert spec["config"]["retention.ms"] == -1 and spec["config"]["retention.bytes"] == -1, name
        else:
            retention_days = int(spec["config"]["retention.ms"]) / 86_400_000
            assert 1 <= retention_days <= 30, name  # dead letters and usage windows: finite
        assert spec["config"]["min.insync.replicas"] < spec["replicas"] or spec["replicas"] == 1
        if overlay.overlay == "dev":  # its Kafka has a single broker: a topic of 3 replicas is never created
            assert (spec["replicas"], spec["config"]["min.insync.replicas"]) == (1, 1), name
        if name in topics.ALL_TOPICS:
            assert spec["partitions"] >= projector_replicas


def test_the_local_stack_has_the_partition_counts_of_the_manifests(overlay: Rendered) -> None:
    """Tests, `make dev` and the benchmark see the production topology: how partitions split between
    projector instances (the range assignor, per topic) decides how evenly they share the work."""
    kafka_topics = {t["metadata"]["name"]: t["spec"]["partitions"] for t in overlay.of_kind("KafkaTopic")}
    assert kafka_topics == TOPIC_PARTITIONS


def test_autoscaled_deployments_leave_the_replica_count_to_their_autoscaler(overlay: Rendered) -> None:
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in overlay.of_kind("HorizontalPodAutoscaler")}
    assert scaled == {"relay", "credential-api"}
    for deployment in overlay.of_kind("Deployment"):
        has_hpa = deployment["metadata"]["name"] in scaled
        assert ("replicas" in deployment["spec"]) != has_hpa, deployment["metadata"]["name"]
    for hpa in overlay.of_kind("HorizontalPodAutoscaler"):
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    if overlay.overlay == "prod":
        assert all(h["spec"]["minReplicas"] >= 3 for h in overlay.of_kind("HorizontalPodAutoscaler"))


def test_every_deployment_has_a_disruption_budget_spread_and_rolls_without_losing_capacity(
    overlay: Rendered,
) -> None:
    budgets = overlay.of_kind("PodDisruptionBudget")
    for deployment in overlay.of_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert sum(selects(b["spec"]["selector"], labels) for b in budgets) == 1
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        spec = deployment["spec"]["template"]["spec"]
        keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        assert all(selects(c["labelSelector"], labels) for c in spec["topologySpreadConstraints"])
        assert spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"


def test_every_pod_runs_restricted(overlay: Rendered) -> None:
    for workload, spec in pod_specs(overlay.objects):
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in containers(spec):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, workload["metadata"]["name"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"] and "add" not in security["capabilities"]
            assert {"requests", "limits"} <= set(container["resources"])


def test_images_are_pinned_slim_multi_stage_non_root_and_without_healthcheck() -> None:
    for service in SERVICES.values():
        text = service.dockerfile.read_text()
        bases = re.findall(r"^FROM (\S+)", text, re.M)
        assert bases == ["${BASE_IMAGE}", "${BASE_IMAGE}"], bases  # one base for both stages, chosen by one ARG
        default = re.findall(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
        assert len(default) == 1 and text.index("ARG BASE_IMAGE=") < text.index("\nFROM "), default
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", default[0]), default
        final = text[text.rindex("\nFROM ") :]
        assert re.search(r"^USER 10001:10001$", final, re.M)
        assert "HEALTHCHECK" not in re.sub(r"#.*", "", text)
        assert not re.search(r"apt-get|gcc|build-essential", final)  # no build tools in the final stage
        assert [line for line in final.splitlines() if line.startswith("COPY")] == [
            "COPY --from=build /opt/taifa /opt/taifa"
        ]
        for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
            assert (REPO / source).exists(), source  # a package directory, or the service's requirements.lock
        assert f"COPY services/{service.name} " in text and "COPY libs/events " in text
        assert "COPY libs/runtime " in text


def test_the_docker_build_context_contains_the_packages_and_no_local_state() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*"  # allow-list: nothing enters the context unless listed
    allowed_dirs = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed_dirs == {"libs/events", "libs/runtime", *(f"services/{name}" for name in SERVICES)}
    assert {"**/*.pem", "**/*.key", "**/.env", "**/*.egg-info"} <= set(rules)
