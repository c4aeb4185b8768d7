"""Cross-references between the manifests and the services' code: settings, ports, probes, commands,
Secrets. A renamed setting, a moved port or an undocumented Secret key fails here, not in a rollout."""

from __future__ import annotations

import re
from typing import Any

from tests.unit.deploy.conftest import DEPLOY, Rendered, containers, pod_specs
from tests.unit.deploy.services_under_deploy import SERVICES, container_env, service_of_image

README = DEPLOY / "README.md"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def config_maps(overlay: Rendered) -> dict[str, dict[str, str]]:
    return {c["metadata"]["name"]: dict(c.get("data") or {}) for c in overlay.of_kind("ConfigMap")}


def each_container(overlay: Rendered) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    return [(w, spec, c) for w, spec in pod_specs(overlay.objects) for c in containers(spec)]


def effective_settings(overlay: Rendered, container: dict[str, Any]) -> Any:
    service = service_of_image(container["image"])
    return service.settings_from(container_env(container, config_maps(overlay)))


def test_every_env_var_the_manifests_set_is_a_real_setting(rendering: Rendered) -> None:
    maps = config_maps(rendering)
    for workload, _, container in each_container(rendering):
        service = service_of_image(container["image"])
        known = service.env_names()
        unknown = sorted(set(container_env(container, maps)) - set(known))
        assert not unknown, f"{workload['metadata']['name']}/{container['name']}: not settings of {service.package}"


def test_the_manifest_environment_builds_valid_settings_for_every_container(rendering: Rendered) -> None:
    for _, _, container in each_container(rendering):
        effective_settings(rendering, container)  # raises pydantic.ValidationError on a bad value


def test_services_bind_every_interface_in_a_pod(rendering: Rendered) -> None:
    # A listener on 127.0.0.1 inside a pod is unreachable for probes and Services.
    for workload, _, container in each_container(rendering):
        if workload["kind"] == "Job":
            continue  # a migration serves nothing
        settings = effective_settings(rendering, container)
        for field, info in type(settings).model_fields.items():
            if "bind" in (info.description or "").lower():
                assert getattr(settings, field) not in LOOPBACK, f"{container['name']}: {field} is loopback"


def listening_ports(settings: Any) -> dict[int, str]:
    return {
        value: field
        for field in type(settings).model_fields
        if field.endswith("_port") and isinstance(value := getattr(settings, field), int)
    }


def test_every_container_port_is_a_port_the_service_listens_on(rendering: Rendered) -> None:
    for workload, _, container in each_container(rendering):
        ports = container.get("ports") or []
        if workload["kind"] in ("Job", "CronJob"):
            assert not ports
            continue
        listening = listening_ports(effective_settings(rendering, container))
        for port in ports:
            assert port["containerPort"] in listening, f"{container['name']} {port} not in {listening}"


def test_every_probe_hits_a_real_route_on_a_real_port(overlay: Rendered) -> None:
    for workload, _, container in each_container(overlay):
        if workload["kind"] in ("Job", "CronJob"):
            continue
        service = service_of_image(container["image"])
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        listening = listening_ports(effective_settings(overlay, container))
        probes = {k: container.get(k) for k in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert probes["livenessProbe"] and probes["readinessProbe"], container["name"]
        assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for kind, probe in probes.items():
            if probe is None:
                continue
            http = probe["httpGet"]
            port = named[http["port"]] if isinstance(http["port"], str) else http["port"]
            assert port in listening, f"{container['name']} {kind} port {http['port']}"
            assert service.serves_path(http["path"]), f"{service.package} has no route {http['path']}"


def test_the_api_routes_are_what_the_ingress_and_probes_expect() -> None:
    from taifa_api.entrypoints.http.app import create_app
    from taifa_api.settings import Settings

    settings = SERVICES["credential-api"].settings_from({})
    assert isinstance(settings, Settings)
    app = create_app(settings)
    routes = {getattr(r, "path", "") for r in app.routes}
    assert {"/healthz", "/readyz", "/metrics", "/openapi.json"} <= routes
    assert "/v1/smtp/credentials" in app.openapi()["paths"]  # what the Ingress's /v1 prefix publishes
    assert "/console" in routes  # the customers' console, mounted: what the Ingress's /console prefix publishes


def test_the_ingress_publishes_only_the_public_api_and_the_console(overlay: Rendered) -> None:
    ingress = overlay.get("Ingress", "credential-api")
    paths = {p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert paths == {"/v1", "/openapi.json", "/console"}  # never /metrics, /healthz or /readyz
    assert {h for t in ingress["spec"]["tls"] for h in t["hosts"]} == {r["host"] for r in ingress["spec"]["rules"]}


def test_every_command_the_manifests_run_is_a_cli_command_of_its_image(rendering: Rendered) -> None:
    for _, _, container in each_container(rendering):
        service = service_of_image(container["image"])
        entrypoint = re.search(r'^ENTRYPOINT \["([^"]+)"\]', service.dockerfile.read_text(), re.M)
        assert entrypoint, service.dockerfile
        script = entrypoint.group(1)
        if "command" in container:  # only ever another console script of the same image (taifa-admin)
            assert len(container["command"]) == 1, container["command"]
            script = container["command"][0]
        assert script in service.console_scripts()
        assert container["args"][0] in service.cli_commands(script), f"{script} {container['args']}"


def test_the_migrations_job_migrates_the_api_before_the_projector(overlay: Rendered) -> None:
    job = overlay.get("Job", "taifa-migrations")["spec"]["template"]["spec"]
    steps = [(service_of_image(c["image"]).name, c["args"]) for c in containers(job)]
    assert steps == [("credential-api", ["migrate"]), ("projector", ["migrate"])]


def test_the_relay_grace_period_outlasts_its_prestop_pause_and_drain(overlay: Rendered) -> None:
    # The drain: its grace period, then a whole delivery's bound more for messages already on their way upstream.
    relay = overlay.get("Deployment", "relay")["spec"]["template"]["spec"]
    container = relay["containers"][0]
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    settings = effective_settings(overlay, container)
    drain = settings.relay_drain_grace_seconds + settings.relay_upstream_delivery_seconds
    assert pause > 0
    assert relay["terminationGracePeriodSeconds"] > pause + drain


def test_the_relay_mounts_the_certificate_where_its_settings_read_it(overlay: Rendered) -> None:
    relay = overlay.get("Deployment", "relay")["spec"]["template"]["spec"]
    container = relay["containers"][0]
    settings = effective_settings(overlay, container)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volume = next(v for v in relay["volumes"] if v["name"] == "tls")
    files = {f"{mounts['tls']}/{item['path']}" for item in volume["secret"]["items"]}
    assert {str(settings.relay_tls_cert_file), str(settings.relay_tls_key_file)} == files
    certificate = overlay.get("Certificate", "relay-tls")["spec"]
    assert volume["secret"]["secretName"] == certificate["secretName"]
    assert settings.relay_hostname in certificate["dnsNames"]


def test_the_relay_load_balancer_maps_587_and_465_onto_the_relay_listeners(overlay: Rendered) -> None:
    service = overlay.get("Service", "relay")["spec"]
    assert service["type"] == "LoadBalancer" and service["externalTrafficPolicy"] == "Local"
    container = overlay.get("Deployment", "relay")["spec"]["template"]["spec"]["containers"][0]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    settings = effective_settings(overlay, container)
    targets = {p["port"]: named[p["targetPort"]] for p in service["ports"]}
    assert targets == {587: settings.relay_submission_port, 465: settings.relay_smtps_port}


def referenced_secrets(overlay: Rendered) -> set[tuple[str, str]]:
    """(Secret name, key) for every key the manifests read; key "*" when the whole Secret is used."""
    refs: set[tuple[str, str]] = set()
    for _, spec, container in each_container(overlay):
        for var in container.get("env") or []:
            ref = (var.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                refs.add((ref["name"], ref["key"]))
        for volume in spec.get("volumes") or []:
            if "secret" in volume:
                items = volume["secret"].get("items") or [{"key": "*"}]
                refs.update((volume["secret"]["secretName"], i["key"]) for i in items)
    for ingress in overlay.of_kind("Ingress"):
        refs.update((t["secretName"], "tls.crt") for t in ingress["spec"]["tls"])
        refs.update((t["secretName"], "tls.key") for t in ingress["spec"]["tls"])
    return refs


def documented_secret_keys() -> set[tuple[str, str]]:
    """(Secret, key) pairs from the table rows of deploy/README.md that name both in backticks."""
    pairs: set[tuple[str, str]] = set()
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) >= 2 and cells[0].startswith("`") and cells[1].startswith("`"):
            pairs.add((cells[0].strip("`"), cells[1].strip("`")))
    return pairs


def test_every_secret_key_referenced_is_documented(rendering: Rendered) -> None:
    refs = referenced_secrets(rendering)
    assert ("taifa-postgres", "projector-url") in refs  # the collector really sees secretKeyRefs
    missing = sorted(refs - documented_secret_keys())
    assert not missing, f"document these Secret keys in deploy/README.md: {missing}"


def test_no_secret_value_is_committed(rendering: Rendered) -> None:
    assert not rendering.of_kind("Secret")
    for name, data in config_maps(rendering).items():
        for key in data:
            assert not re.search(r"SECRET|PASSWORD|TOKEN|DATABASE_URL|REDIS_URL", key), f"{name}: {key}"
