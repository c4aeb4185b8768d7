"""deploy/compose.yaml: the stack it describes is complete and agrees with the services' code."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from taifa_events import topics

from tests.unit.deploy.conftest import DEPLOY, REPO
from tests.unit.deploy.services_under_deploy import IMAGE_REGISTRY, SECRET_PLACEHOLDERS, service_of_image

COMPOSE = DEPLOY / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def ours(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose.items() if s["image"].startswith(IMAGE_REGISTRY)}


def test_the_stack_has_kraft_kafka_postgres_redis_a_mail_sink_the_services_and_migrations(
    compose: dict[str, Any],
) -> None:
    assert compose["kafka"]["image"].startswith("apache/kafka:")
    kafka_env = compose["kafka"]["environment"]
    assert set(kafka_env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}  # KRaft, no ZooKeeper
    assert not any("ZOOKEEPER" in key for key in kafka_env)
    assert compose["postgres"]["image"].startswith("postgres:")
    assert compose["redis"]["image"].startswith("redis:")
    assert compose["mailpit"]["image"].startswith("axllent/mailpit:")
    assert {service_of_image(s["image"]).name for s in ours(compose).values()} == {
        "credential-api",
        "projector",
        "relay",
    }
    migrations = [(n, s["command"]) for n, s in ours(compose).items() if s.get("command") == ["migrate"]]
    assert [n for n, _ in migrations] == ["migrate-api", "migrate-projector"]
    assert compose["migrate-projector"]["depends_on"]["migrate-api"]["condition"] == "service_completed_successfully"


def test_every_image_is_pinned_and_ours_are_built_from_the_dockerfiles(compose: dict[str, Any]) -> None:
    for name, service in compose.items():
        tag = service["image"].rsplit(":", 1)[-1]
        assert ":" in service["image"] and tag != "latest" and (re.search(r"\d", tag) or tag == "dev"), name
    for name, service in ours(compose).items():
        build = service["build"]
        assert (DEPLOY / build["context"]).resolve() == REPO, name
        assert (REPO / build["dockerfile"]) == service_of_image(service["image"]).dockerfile, name


def test_the_topics_created_are_the_event_library_topics_and_their_dead_letters(compose: dict[str, Any]) -> None:
    script = compose["kafka-topics"]["command"][0]
    created = set(re.findall(r"(taifa\.[a-z.-]+):\d+", script))
    consumed = (*topics.ALL_TOPICS, topics.USAGE_TOPIC)  # the usage windows too (the projector's usage consumer)
    assert created == set(consumed) | {topics.dead_letter_topic(t) for t in consumed}


def interpolated(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment with `${VAR:?...}` (a value the user exports) as a placeholder."""
    env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
    for key, value in env.items():
        match = re.fullmatch(r"\$\{(\w+):\?[^}]*\}", value)
        if match:
            assert match.group(1) == key, key
            env[key] = SECRET_PLACEHOLDERS[key]
    return env


def test_the_event_signing_key_is_exported_by_the_user_never_committed(compose: dict[str, Any]) -> None:
    for name in ("credential-api", "projector"):
        assert compose[name]["environment"]["TAIFA_EVENT_SIGNING_KEYS"].startswith("${TAIFA_EVENT_SIGNING_KEYS:?")


def test_the_session_signing_key_is_exported_by_the_user_never_committed(compose: dict[str, Any]) -> None:
    assert compose["credential-api"]["environment"]["TAIFA_API_JWT_SECRET"].startswith("${TAIFA_API_JWT_SECRET:?")


def test_the_webhook_key_ring_is_exported_by_the_user_and_the_api_and_dispatcher_share_it(
    compose: dict[str, Any],
) -> None:
    for name in ("credential-api", "webhooks"):
        environment = compose[name]["environment"]
        assert environment["TAIFA_WEBHOOK_SECRET_KEYS"].startswith("${TAIFA_WEBHOOK_SECRET_KEYS:?"), name
        assert environment["TAIFA_EVENT_SIGNING_KEYS"].startswith("${TAIFA_EVENT_SIGNING_KEYS:?"), name


def test_every_env_var_is_a_real_setting_and_the_settings_validate(compose: dict[str, Any]) -> None:
    for name, service in ours(compose).items():
        target = service_of_image(service["image"])
        env = interpolated(service)
        unknown = sorted(set(env) - set(target.env_names()))
        assert not unknown, f"{name}: {unknown} are not settings of {target.package}"
        target.settings_from(env)


def test_every_command_is_a_cli_command_and_every_published_port_is_listened_on(compose: dict[str, Any]) -> None:
    for name, service in ours(compose).items():
        target = service_of_image(service["image"])
        if service.get("entrypoint", [""])[0] == "python":  # relay-cert runs a script from deploy/compose/
            script = service["entrypoint"][1]
            mounted = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"] if v.startswith("./")}
            assert (DEPLOY / mounted[script]).is_file(), name
            continue
        if "entrypoint" in service:  # another console script of the image (the webhook dispatcher's)
            script = service["entrypoint"][0]
        else:
            entrypoint = re.search(r'^ENTRYPOINT \["([^"]+)"\]', target.dockerfile.read_text(), re.M)
            assert entrypoint, name
            script = entrypoint.group(1)
        assert service["command"][0] in target.cli_commands(script), name
        settings = target.settings_from(interpolated(service))
        listening = {getattr(settings, f) for f in type(settings).model_fields if f.endswith("_port")}
        for mapping in service.get("ports") or []:
            assert int(mapping.split(":")[-1]) in listening, f"{name} publishes {mapping}"


def host_port(mapping: str) -> str:
    """The host port of `127.0.0.1:${VAR:-587}:2587`: the default of its variable."""
    return re.sub(r"\$\{\w+:-(\d+)\}", r"\1", mapping).split(":")[-2]


def test_every_published_port_is_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose.items():
        for mapping in service.get("ports") or []:
            assert mapping.startswith("127.0.0.1:"), f"{name} publishes {mapping} beyond loopback"


def test_the_relay_delivers_to_the_mail_sink_with_the_certificate_it_was_given(compose: dict[str, Any]) -> None:
    relay = compose["relay"]
    env = relay["environment"]
    assert env["TAIFA_RELAY_UPSTREAM_HOST"] == "mailpit" and env["TAIFA_RELAY_UPSTREAM_PORT"] == "1025"
    assert {host_port(p) for p in relay["ports"]} >= {"587", "465"}
    cert_volume = next(v for v in relay["volumes"] if v.endswith(":/etc/taifa/tls:ro")).split(":")[0]
    assert any(v.startswith(f"{cert_volume}:") for v in compose["relay-cert"]["volumes"])
    assert env["TAIFA_RELAY_TLS_CERT_FILE"].startswith("/etc/taifa/tls/")


def test_the_testcontainers_path_uses_the_compose_images(compose: dict[str, Any]) -> None:
    """TAIFA_TEST_SERVICES=containers starts the images of this file (or their stand-ins, made under its names)."""
    from taifa_localstack import containers

    assert compose["postgres"]["image"] == containers.POSTGRES_IMAGE
    assert compose["redis"]["image"] == containers.REDIS_IMAGE
    assert compose["kafka"]["image"] == containers.KAFKA_IMAGE
