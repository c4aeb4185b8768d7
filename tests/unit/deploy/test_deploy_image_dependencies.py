"""Each image installs only its own service (plus libs/events and libs/runtime): everything the service's code imports
must come from the dependencies its pyproject.toml declares. In the shared development venv a missing
declaration goes unnoticed; in the image it is an ImportError at start."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.unit.deploy.conftest import REPO
from tests.unit.deploy.services_under_deploy import SERVICES, Service

OPTIONAL_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


def _names(node: ast.expr | None) -> set[str]:
    if node is None:
        return set()
    if isinstance(node, ast.Tuple):
        return set().union(*(_names(e) for e in node.elts))
    return {node.id} if isinstance(node, ast.Name) else {node.attr} if isinstance(node, ast.Attribute) else set()


def _is_guard(node: ast.AST) -> bool:
    """`try: ... except ImportError`, `with suppress(ImportError)` or `if TYPE_CHECKING:`."""
    if isinstance(node, ast.Try):
        return any(_names(h.type) & OPTIONAL_IMPORT_ERRORS for h in node.handlers)
    if isinstance(node, ast.With):
        calls = [i.context_expr for i in node.items if isinstance(i.context_expr, ast.Call)]
        return any(set().union(*map(_names, call.args)) & OPTIONAL_IMPORT_ERRORS for call in calls)
    return isinstance(node, ast.If) and "TYPE_CHECKING" in _names(node.test)


def required_imports(service: Service) -> set[str]:
    """Top-level modules the service imports unconditionally (not stdlib, not itself)."""
    modules: set[str] = set()

    def visit(node: ast.AST, guarded: bool) -> None:
        guarded = guarded or _is_guard(node)
        if not guarded and isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        if not guarded and isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    for path in service.source.rglob("*.py"):
        visit(ast.parse(path.read_text()), False)
    return modules - set(sys.stdlib_module_names) - {service.package, "__future__"}


def installable_closure(service: Service) -> set[str]:
    """Canonical names of the distributions an image of this service contains."""
    pyproject = tomllib.loads((service.directory / "pyproject.toml").read_text())
    # (requirement, the extras its parent asked for): an extra's dependencies count only when requested.
    pending = [(Requirement(r), frozenset[str]()) for r in pyproject["project"]["dependencies"]]
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    while pending:
        requirement, parent_extras = pending.pop()
        if requirement.marker and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in (parent_extras or {""})
        ):
            continue
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(key[0])
        pending.extend((Requirement(r), key[1]) for r in metadata.requires(requirement.name) or [])
    return names


def test_every_import_of_each_service_is_installed_in_its_image() -> None:
    distributions = metadata.packages_distributions()
    for service in SERVICES.values():
        closure = installable_closure(service)
        assert "taifa-events" in closure
        for module in sorted(required_imports(service)):
            providers = {canonicalize_name(d) for d in distributions.get(module, [])}
            assert providers, f"{service.package} imports {module}, which no installed distribution provides"
            assert providers & closure, f"{service.package} imports {module} ({providers}): add it to {service.name}"


def test_the_import_scan_sees_real_imports_and_honours_guards() -> None:
    relay = required_imports(SERVICES["relay"])
    assert {"aiosmtpd", "redis", "pydantic_settings", "taifa_events"} <= relay
    guarded = ast.parse("try:\n    import uvloop\nexcept ImportError:\n    pass\n")
    assert _is_guard(guarded.body[0])
    assert (REPO / "libs" / "events" / "pyproject.toml").is_file()
