"""Validate rendered Kubernetes manifests offline; run with the tools venv (.venv/tools/k8s/bin/python).

Usage: validate_manifests.py RENDERED.yaml [--kubernetes-version 1.33.0 ...] [--schemas deploy/k8s/schemas]

Every object is checked, and each one says how:
- built-in kinds: the Kubernetes JSON schemas shipped by `kubernetes-validate`, strict mode (unknown
  fields are errors, like `kubectl apply` with strict field validation), for each version asked;
- custom resources (cert-manager Certificate, Strimzi KafkaTopic and KafkaUser): a schema vendored from the
  upstream CRD's openAPIV3Schema (deploy/k8s/schemas/, each file names its source and commit), and
  their `metadata` against the Kubernetes ObjectMeta schema;
- anything else is reported as `no-schema` and counts as a failure: nothing passes unvalidated.
Prints one JSON document: {"objects": [{"kind", "name", "namespace", "validated_with", "errors"}]}.
Exit status 1 when any object has errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import importlib_resources
import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

DEFAULT_VERSIONS = ("1.33.0", "1.37.0")
OBJECT_META_REF = "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def load_crd_schemas(directory: Path) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """(apiVersion, kind) -> (file name, schema) for every vendored CRD schema."""
    schemas: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for path in sorted(directory.glob("*.yaml")):
        schema = yaml.safe_load(path.read_text())
        api_version = schema["properties"]["apiVersion"]["enum"][0]
        kind = schema["properties"]["kind"]["enum"][0]
        schemas[(api_version, kind)] = (path.name, schema)
    return schemas


def _definitions(version: str) -> dict[str, Any]:
    schema_dir = f"v{version}-local-strict"
    ref = importlib_resources.files("kubernetes_validate").joinpath(
        f"kubernetes-json-schema/{schema_dir}/_definitions.json"
    )
    return json.loads(ref.read_text())


def validate_custom(obj: dict[str, Any], schema: dict[str, Any], version: str) -> list[str]:
    """Errors of a custom resource against its vendored schema, metadata against ObjectMeta."""
    full = dict(schema)
    full["$id"] = "https://kubernetes.io/api/custom-resource.json"
    full["properties"] = {**schema["properties"], "metadata": {"$ref": OBJECT_META_REF}}
    registry: Registry = Resource.from_contents(_definitions(version)) @ Registry()
    validator = jsonschema.Draft202012Validator(full, registry=registry)
    return [f"{'.'.join(str(p) for p in e.path) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)]


def validate_object(
    obj: dict[str, Any], versions: tuple[str, ...], crds: dict[tuple[str, str], tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    result: dict[str, Any] = {
        "kind": obj.get("kind"),
        "apiVersion": obj.get("apiVersion"),
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "validated_with": [],
        "errors": [],
    }
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    for version in versions:
        if key in crds:
            source, schema = crds[key]
            errors = validate_custom(obj, schema, version)
            result["validated_with"].append(f"vendored CRD schema {source} + ObjectMeta {version}")
            result["errors"].extend(f"[{version}] {e}" for e in errors)
            continue
        try:
            kv.validate(obj, version, strict=True)
            result["validated_with"].append(f"kubernetes-validate {kubernetes_validate.__version__} strict {version}")
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "<root>"
            result["validated_with"].append(f"kubernetes-validate strict {version}")
            result["errors"].append(f"[{version}] {path}: {e.message}")
        except kv.SchemaNotFoundError as e:
            result["validated_with"].append("no-schema")
            result["errors"].append(f"[{version}] no schema: {e.message}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rendered", type=Path)
    parser.add_argument("--kubernetes-version", action="append", dest="versions")
    parser.add_argument("--schemas", type=Path, default=Path(__file__).resolve().parents[1] / "k8s" / "schemas")
    args = parser.parse_args(argv)
    versions = tuple(args.versions or DEFAULT_VERSIONS)
    crds = load_crd_schemas(args.schemas)
    objects = [doc for doc in yaml.safe_load_all(args.rendered.read_text()) if doc]
    results = [validate_object(obj, versions, crds) for obj in objects]
    json.dump({"versions": versions, "objects": results}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
