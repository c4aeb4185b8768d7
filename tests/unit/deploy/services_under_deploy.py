"""What the deploy tests know about the three services: package, settings class, source, image.

Everything else (setting names, ports, routes, CLI commands) is read from the services' own code,
so that a renamed setting or a moved port breaks the deploy tests rather than a production rollout.
"""

from __future__ import annotations

import importlib
import os
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

from tests.unit.deploy.conftest import REPO

IMAGE_REGISTRY = "ghcr.io/taifa-mail/"

# Placeholders standing in for the values of out-of-band Secrets when the tests build a service's
# Settings from a manifest's environment (the real values are never in the repository).
SECRET_PLACEHOLDERS = {
    "TAIFA_DATABASE_URL": "postgresql://taifa:placeholder@postgres.internal:5432/taifa",
    "TAIFA_REDIS_URL": "rediss://relay:placeholder@redis.internal:6379/0",
    "TAIFA_API_JWT_SECRET": "placeholder-placeholder-placeholder-placeholder",
    "TAIFA_EVENT_SIGNING_KEYS": "taifa-1:placeholder-placeholder-placeholder-placeholder",
    "TAIFA_WEBHOOK_SECRET_KEYS": "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
}


@dataclass(frozen=True)
class Service:
    """One deployable service of the repository."""

    name: str  # Deployment name, image name and directory under services/
    package: str

    @property
    def directory(self) -> Path:
        return REPO / "services" / self.name

    @property
    def source(self) -> Path:
        return self.directory / "src" / self.package

    @property
    def image(self) -> str:
        return IMAGE_REGISTRY + self.name

    @property
    def dockerfile(self) -> Path:
        return REPO / "deploy" / "docker" / self.name / "Dockerfile"

    def settings_class(self) -> type[BaseSettings]:
        module = importlib.import_module(f"{self.package}.settings")
        settings: type[BaseSettings] = module.Settings
        return settings

    def env_names(self) -> dict[str, str]:
        """Environment variable name -> field name, as pydantic-settings reads them."""
        cls = self.settings_class()
        prefix = str(cls.model_config.get("env_prefix", ""))
        names: dict[str, str] = {}
        for field, info in cls.model_fields.items():
            aliases = [info.alias] if isinstance(info.alias, str) else []
            if isinstance(info.validation_alias, str):
                aliases.append(info.validation_alias)
            for env in aliases or [prefix + field]:
                names[env.upper()] = field
        return names

    def settings_from(self, env: dict[str, str]) -> BaseSettings:
        """The Settings a container with exactly this environment would build."""
        with only_taifa_env(env):
            return self.settings_class()(_env_file=None)

    def console_scripts(self) -> dict[str, str]:
        pyproject = tomllib.loads((self.directory / "pyproject.toml").read_text())
        scripts: dict[str, str] = pyproject["project"]["scripts"]
        return scripts

    def cli_commands(self, script: str) -> set[str]:
        """Sub-command names of a console script (a typer app)."""
        import typer.main

        module_name, _, attr = self.console_scripts()[script].partition(":")
        app = getattr(importlib.import_module(module_name), attr)
        command = typer.main.get_command(app)
        return set(getattr(command, "commands", {}))

    def source_text(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.source.rglob("*.py")))

    def serves_path(self, path: str) -> bool:
        """The path is a route of the service: a literal in its code, or served by the shared HealthServer it uses."""
        source = self.source_text()
        if re.search(r"""["']""" + re.escape(path) + r"""["']""", source):
            return True
        return "taifa_runtime.health import HealthServer" in source and health_server_serves(path)


def health_server_serves(path: str) -> bool:
    """Ask the shared operations HTTP app itself (WSGI call, readiness stubbed as true)."""
    import asyncio

    from taifa_runtime.health import HealthServer

    async def ready() -> bool:
        return True

    async def call() -> str:
        server = HealthServer("127.0.0.1", 0, ready)
        await server.start()
        try:
            statuses: list[str] = []
            body = await asyncio.to_thread(
                lambda: list(server.app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, lambda s, h: statuses.append(s)))
            )
            assert body
            return statuses[0]
        finally:
            await server.stop()

    return asyncio.run(call()).startswith("200")


SERVICES: dict[str, Service] = {
    s.name: s
    for s in (
        Service("credential-api", "taifa_api"),
        Service("projector", "taifa_projector"),
        Service("relay", "taifa_relay"),
    )
}


def service_of_image(image: str) -> Service:
    name = image.rsplit(":", 1)[0].removeprefix(IMAGE_REGISTRY)
    assert name in SERVICES, f"image {image} is not one of ours"
    return SERVICES[name]


@contextmanager
def only_taifa_env(env: dict[str, str]) -> Iterator[None]:
    """os.environ with every TAIFA_* variable replaced by `env` for the duration."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("TAIFA_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


def container_env(container: dict[str, Any], config_maps: dict[str, dict[str, str]]) -> dict[str, str]:
    """The environment a container gets: envFrom ConfigMaps, then env (Secrets as placeholders)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        assert "configMapRef" in source, f"envFrom {source}: Secrets are referenced key by key (secretKeyRef)"
        env.update(config_maps[source["configMapRef"]["name"]])
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            assert "secretKeyRef" in var.get("valueFrom", {}), var
            env[var["name"]] = SECRET_PLACEHOLDERS.get(var["name"], "placeholder")
    return env
