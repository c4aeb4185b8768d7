"""Kafka's trust boundary in the manifests: who may write the event topics, how the services authenticate,
which pods reach the brokers, and where the event signing keys come from."""

from __future__ import annotations

from typing import Any

from taifa_events import topics
from taifa_events.signing import Keyring

from tests.unit.deploy.conftest import Rendered
from tests.unit.deploy.test_deploy_cross_references import effective_settings
from tests.unit.deploy.test_deploy_manifest_rules import KAFKA, pod_labels, selects

DATA_TOPICS = set(topics.ALL_TOPICS)
DEAD_LETTER_TOPICS = {topics.dead_letter_topic(t) for t in topics.ALL_TOPICS}
ALL_TOPICS = DATA_TOPICS | DEAD_LETTER_TOPICS
APP_WORKLOADS = ("credential-api", "projector", "relay", "webhooks", "taifa-migrations")
KAFKA_CLIENTS = {"credential-api", "projector", "webhooks"}  # webhooks: the dispatcher (credential-api image)
APP_NAMESPACE = {"kubernetes.io/metadata.name": "taifa"}


def users(overlay: Rendered) -> dict[str, dict[str, Any]]:
    return {u["metadata"]["name"]: u for u in overlay.of_kind("KafkaUser")}


def granted(user: dict[str, Any], operation: str, resource_type: str = "topic") -> set[str]:
    """The names (of every topic or group the manifests know) on which the user is allowed `operation`."""
    candidates = ALL_TOPICS if resource_type == "topic" else {"taifa-projector"}
    names: set[str] = set()
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        ops = set(acl.get("operations") or [acl.get("operation")])
        if acl.get("type", "allow") != "allow" or resource["type"] != resource_type or not ops & {operation, "All"}:
            continue
        if resource.get("patternType", "literal") == "prefix":
            names |= {n for n in candidates if n.startswith(resource["name"])}
        else:
            names.add(resource["name"])
    return names


def test_acls_are_enforced_and_never_wildcards(overlay: Rendered) -> None:
    assert set(users(overlay)) == {"taifa-credential-api", "taifa-projector", "taifa-webhooks"}
    for name, user in users(overlay).items():
        assert user["metadata"]["namespace"] == "taifa" and user["metadata"]["labels"]["strimzi.io/cluster"] == "taifa"
        assert user["spec"]["authentication"]["type"] == "scram-sha-512", name
        assert user["spec"]["authorization"]["type"] == "simple", name
        for acl in user["spec"]["authorization"]["acls"]:
            assert acl["resource"]["type"] in ("topic", "group"), (name, acl)  # nothing on the cluster
            assert acl["resource"].get("patternType", "literal") == "literal" and acl["resource"]["name"] != "*"
            assert not {"All", "Create", "Delete", "Alter", "AlterConfigs"} & set(acl["operations"]), (name, acl)


def test_only_the_api_may_write_the_data_topics(overlay: Rendered) -> None:
    for topic in DATA_TOPICS:
        writers = {name for name, user in users(overlay).items() if topic in granted(user, "Write")}
        assert writers == {"taifa-credential-api"}, topic
    assert granted(users(overlay)["taifa-credential-api"], "Write") == DATA_TOPICS
    assert granted(users(overlay)["taifa-credential-api"], "Read") == set()


def test_the_projector_reads_the_data_topics_writes_only_dead_letters_and_uses_its_group(overlay: Rendered) -> None:
    projector = users(overlay)["taifa-projector"]
    container = overlay.get("Deployment", "projector")["spec"]["template"]["spec"]["containers"][0]
    settings = effective_settings(overlay, container)
    assert set(settings.projector_topics) == DATA_TOPICS
    usage_topic = settings.projector_usage_topic  # usage windows (issue 16): its flusher writes, its usage group reads
    assert usage_topic == topics.USAGE_TOPIC
    assert granted(projector, "Read") == DATA_TOPICS | {usage_topic}
    assert granted(projector, "Write") == DEAD_LETTER_TOPICS | {usage_topic, topics.dead_letter_topic(usage_topic)}
    assert granted(projector, "Read", "group") == {settings.projector_group_id, settings.projector_usage_group_id}


def test_the_webhook_dispatcher_only_reads_the_data_and_usage_topics_in_its_group(overlay: Rendered) -> None:
    dispatcher = users(overlay)["taifa-webhooks"]
    container = overlay.get("Deployment", "webhooks")["spec"]["template"]["spec"]["containers"][0]
    settings = effective_settings(overlay, container)
    assert granted(dispatcher, "Read") == DATA_TOPICS | {topics.USAGE_TOPIC}
    assert granted(dispatcher, "Write") == set()  # its deliveries go to PostgreSQL, never to Kafka
    assert granted(dispatcher, "Read", "group") == {settings.webhooks_group_id}


def test_each_service_authenticates_as_its_own_kafka_user_over_tls(overlay: Rendered) -> None:
    for workload, user in (
        ("credential-api", "taifa-credential-api"), ("projector", "taifa-projector"), ("webhooks", "taifa-webhooks"),
    ):  # fmt: skip
        pod = overlay.get("Deployment", workload)["spec"]["template"]["spec"]
        container = pod["containers"][0]
        settings = effective_settings(overlay, container)
        assert settings.kafka_security_protocol == "SASL_SSL", workload
        assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512" and settings.kafka_sasl_username == user
        password = next(v for v in container["env"] if v["name"] == "TAIFA_KAFKA_SASL_PASSWORD")
        # The Secret Strimzi's User Operator writes for that KafkaUser (same name, key `password`).
        assert password["valueFrom"]["secretKeyRef"] == {"name": user, "key": "password"}
        assert users(overlay)[user]["metadata"]["labels"]["app.kubernetes.io/name"] == workload
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        ca = settings.kafka_ca_file
        assert ca is not None and str(ca.parent) in mounts, workload
        volume = next(v for v in pod["volumes"] if v["name"] == mounts[str(ca.parent)])
        assert ca.name in {item["path"] for item in volume["secret"]["items"]}


def test_the_api_the_projector_and_the_dispatcher_read_the_signing_keys_from_one_secret(overlay: Rendered) -> None:
    for workload in ("credential-api", "projector", "webhooks"):
        container = overlay.get("Deployment", workload)["spec"]["template"]["spec"]["containers"][0]
        keys = next(v for v in container["env"] if v["name"] == "TAIFA_EVENT_SIGNING_KEYS")
        assert keys["valueFrom"]["secretKeyRef"] == {"name": "taifa-event-signing", "key": "keys"}
        settings = effective_settings(overlay, container)
        if workload == "webhooks":  # verifies only: every key of the ring, no active one
            Keyring.parse(settings.event_signing_keys.get_secret_value())
            continue
        settings.event_keyring()  # usable: the API has its active key id, the projector its verification keys
    api = overlay.get("Deployment", "credential-api")["spec"]["template"]["spec"]["containers"][0]
    assert effective_settings(overlay, api).event_signing_key_id


def test_only_the_api_the_projector_and_the_dispatcher_reach_the_brokers(overlay: Rendered) -> None:
    policy = overlay.get("NetworkPolicy", "taifa-kafka-brokers")
    assert policy["metadata"]["namespace"] == "kafka"
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert selects(spec["podSelector"], {"strimzi.io/cluster": "taifa", "strimzi.io/kind": "Kafka",
                                         "strimzi.io/name": "taifa-kafka"})  # fmt: skip
    admitted: set[str] = set()
    client_ports: set[tuple[str, int]] = set()
    for rule in spec["ingress"]:
        ports = {(p.get("protocol", "TCP"), p["port"]) for p in rule["ports"]}
        assert rule["from"], "a rule without peers admits everybody"
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            namespaces = peer.get("namespaceSelector")
            if namespaces is None or not selects(namespaces, APP_NAMESPACE):
                continue  # a peer of namespace `kafka` itself, or of another namespace (monitoring, Strimzi)
            assert "podSelector" in peer, "the whole app namespace would be admitted"
            selected = {w for w in APP_WORKLOADS if selects(peer["podSelector"], pod_labels(overlay, w))}
            if selected:
                admitted |= selected
                client_ports |= ports
    assert admitted == KAFKA_CLIENTS  # never the relay, which holds no Kafka credentials
    assert client_ports == KAFKA  # the SCRAM/TLS listener the services' bootstrap names, nothing else
