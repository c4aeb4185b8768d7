#!/usr/bin/env bash
# `make test-containers`: the integration suite with TAIFA_TEST_SERVICES=containers, i.e. PostgreSQL, Redis and the
# Kafka-protocol broker started by testcontainers, against podman's Docker-compatible API (`podman system service`
# on a private socket, DOCKER_HOST pointing at it) and the images of deploy/compose.yaml (stand-ins built by
# deploy/scripts/images.sh infra where nothing can be pulled). Ryuk (testcontainers' reaper, an image of its own) is
# off: the fixtures stop their containers. Arguments go to pytest (default: tests/integration).
set -euo pipefail
cd "$(dirname "$0")/../.."

export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}"
bash deploy/scripts/images.sh infra

socket_dir=$(mktemp -d /tmp/taifa-podman-api-XXXXXX)
podman system service --time=0 "unix://$socket_dir/podman.sock" &
service_pid=$!
stop_service() {
    kill "$service_pid" 2>/dev/null || true
    wait "$service_pid" 2>/dev/null || true
    rm -rf "$socket_dir"
}
trap stop_service EXIT
for _ in $(seq 1 60); do
    [ -S "$socket_dir/podman.sock" ] && break
    kill -0 "$service_pid" 2>/dev/null || { echo "podman system service exited" >&2; exit 1; }
    sleep 0.5
done
[ -S "$socket_dir/podman.sock" ] || { echo "podman system service made no socket within 30s" >&2; exit 1; }

export DOCKER_HOST="unix://$socket_dir/podman.sock" TESTCONTAINERS_RYUK_DISABLED=true TAIFA_TEST_SERVICES=containers
# The published ports are on this host's loopback, even where testcontainers believes it runs inside a container.
export TESTCONTAINERS_CONNECTION_MODE=docker_host TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
[ $# -gt 0 ] || set -- tests/integration
status=0
.venv/bin/pytest "$@" || status=$?
exit "$status"
