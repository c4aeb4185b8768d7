#!/usr/bin/env bash
# `make compose-up` / `make compose-down`: the stack of deploy/compose.yaml.
#
#   deploy/scripts/compose.sh up|down
#
# With a Docker engine that answers: `docker compose up --build --wait` / `down -v`. Otherwise rootful podman with
# podman-compose (.venv/tools/compose, `make tools`): the images are built by deploy/scripts/images.sh (stand-ins
# for the infrastructure images that cannot be pulled here), then the services come up in stages, because
# podman-compose with podman 4.3 does not honour `depends_on: condition` and its `up` can wait forever on a
# container that never started: every call is bounded by TAIFA_COMPOSE_TIMEOUT seconds (default 180).
#
# TAIFA_EVENT_SIGNING_KEYS, TAIFA_WEBHOOK_SECRET_KEYS and TAIFA_API_JWT_SECRET: taken from the environment, else made
# once and kept in .taifa/compose/signing.env (git-ignored). TAIFA_COMPOSE_PROJECT names the compose project
# (default: the file's `taifa`); the published loopback ports are TAIFA_COMPOSE_{API,SMTP,SMTPS,RELAY_HEALTH,WEBHOOKS_HEALTH,MAIL_UI}_PORT
# (deploy/compose.yaml).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}"
FILE=deploy/compose.yaml
PROJECT="${TAIFA_COMPOSE_PROJECT:-taifa}"
TIMEOUT="${TAIFA_COMPOSE_TIMEOUT:-180}"
STATE=.taifa/compose
PODMAN_COMPOSE=.venv/tools/compose/bin/podman-compose

die() { echo "compose.sh: $*" >&2; exit 1; }

# Each key the environment lacks is made once into $STATE/signing.env (a file of VAR=value lines, mode 600).
signing_keys() {
    local var make
    mkdir -p "$STATE"
    (umask 077 && touch "$STATE/signing.env")
    for var in TAIFA_EVENT_SIGNING_KEYS TAIFA_WEBHOOK_SECRET_KEYS TAIFA_API_JWT_SECRET; do
        [ -z "${!var:-}" ] || continue
        if ! grep -q "^$var=" "$STATE/signing.env"; then
            case $var in
                TAIFA_EVENT_SIGNING_KEYS) make='import secrets; print("taifa-1:" + secrets.token_hex(32))' ;;
                TAIFA_API_JWT_SECRET) make='import secrets; print(secrets.token_urlsafe(48))' ;;
                *) make='import base64, secrets; print("k1:" + base64.b64encode(secrets.token_bytes(32)).decode())' ;;
            esac
            echo "$var=$(python3 -c "$make")" >>"$STATE/signing.env"
        fi
        export "$(grep "^$var=" "$STATE/signing.env")"
    done
}

docker_engine() { command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; }

pc() { timeout "$TIMEOUT" "$PODMAN_COMPOSE" -p "$PROJECT" -f "$FILE" "$@"; }

container() {
    podman ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" | head -1
}

# Poll a command until it succeeds, at most TIMEOUT seconds; else show the service's log and fail.
wait_for() {
    local service=$1 what=$2 deadline=$((SECONDS + TIMEOUT))
    shift 2
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            podman logs --tail 40 "$(container "$service")" >&2 || true
            die "$what not ready after ${TIMEOUT}s"
        fi
        sleep 1
    done
}

# The one-shot services must exit 0. Each may run again (topics --if-not-exists, migrations, a certificate that
# nothing uses before stage 4), so one that fails is started again, at most TAIFA_COMPOSE_RETRIES times (default
# 2), as `restart: on-failure` would: podman 4.3's network DNS (aardvark-dns) can stop answering for a minute
# while containers join the network, and a new start sets the container's network up again.
wait_done() {
    local service id code attempt
    for service in "$@"; do
        id=$(container "$service")
        [ -n "$id" ] || die "$service was not created"
        for ((attempt = 0; ; attempt++)); do
            code=$(timeout "$TIMEOUT" podman wait "$id") || die "$service still running after ${TIMEOUT}s"
            [ "$code" != 0 ] || break
            podman logs --tail 30 "$id" >&2 || true
            [ "$attempt" -lt "${TAIFA_COMPOSE_RETRIES:-2}" ] || die "$service exited with $code"
            echo "compose.sh: $service exited with $code; starting it again" >&2
            podman start "$id" >/dev/null || die "$service could not be started again"
        done
    done
}

running() { [ "$(podman inspect --format '{{.State.Running}}' "$(container "$1")")" = true ]; }

http_ok() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)' "$1"; }

up_podman() {
    [ -x "$PODMAN_COMPOSE" ] || die "podman-compose is missing: run \`make tools\`"
    # TAIFA_COMPOSE_BUILD=0: the images were just built (the compose test's session did it).
    [ "${TAIFA_COMPOSE_BUILD:-1}" = 0 ] || bash deploy/scripts/images.sh services
    local image missing=0
    for image in $(sed -n 's/^    image: \([^g].*\)$/\1/p' "$FILE" | sort -u); do
        podman image exists "$image" || missing=1
    done
    [ "$missing" = 0 ] || bash deploy/scripts/images.sh infra
    echo "stage 1: infrastructure"
    pc up -d --no-deps --no-build postgres redis kafka mailpit >/dev/null
    wait_for postgres postgres podman exec "$(container postgres)" pg_isready -U taifa -d taifa
    wait_for redis redis podman exec "$(container redis)" redis-cli ping
    wait_for kafka kafka podman exec "$(container kafka)" /opt/kafka/bin/kafka-broker-api-versions.sh \
        --bootstrap-server localhost:9092
    echo "stage 2: topics, relay certificate, API migrations"
    pc up -d --no-deps --no-build kafka-topics relay-cert migrate-api >/dev/null
    wait_done kafka-topics relay-cert migrate-api
    echo "stage 3: projector migrations"
    pc up -d --no-deps --no-build migrate-projector >/dev/null
    wait_done migrate-projector
    echo "stage 4: projector, credential API, relay, webhook dispatcher"
    pc up -d --no-deps --no-build projector credential-api relay webhooks >/dev/null
    wait_for credential-api "credential-api /readyz" http_ok "http://127.0.0.1:${TAIFA_COMPOSE_API_PORT:-8080}/readyz"
    wait_for relay "relay /readyz" http_ok "http://127.0.0.1:${TAIFA_COMPOSE_RELAY_HEALTH_PORT:-9101}/readyz"
    wait_for webhooks "webhooks /readyz" http_ok \
        "http://127.0.0.1:${TAIFA_COMPOSE_WEBHOOKS_HEALTH_PORT:-9103}/readyz"
    wait_for projector projector running projector
    echo "up: API http://127.0.0.1:${TAIFA_COMPOSE_API_PORT:-8080} · SMTP 127.0.0.1:${TAIFA_COMPOSE_SMTP_PORT:-587}" \
        "(STARTTLS) · mail UI http://127.0.0.1:${TAIFA_COMPOSE_MAIL_UI_PORT:-8025}"
}

down_podman() {
    if [ -x "$PODMAN_COMPOSE" ]; then
        pc down -v >/dev/null 2>&1 || true
    fi
    # Whatever podman-compose left (a container that never started, a timed-out call), by the project's label.
    local ids
    ids=$(podman ps -aq --filter "label=com.docker.compose.project=$PROJECT")
    [ -z "$ids" ] || podman rm -f -t 5 $ids >/dev/null
    ids=$(podman volume ls -q --filter "label=com.docker.compose.project=$PROJECT")
    [ -z "$ids" ] || podman volume rm -f $ids >/dev/null
    podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
}

# Sourced (tests/unit/deploy/test_compose_script.py): the functions only.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    case "${1:-}" in
        up)
            signing_keys
            if docker_engine; then
                docker compose -p "$PROJECT" -f "$FILE" up -d --build --wait
            else
                command -v podman >/dev/null 2>&1 || die "neither a Docker engine nor podman: run \`make setup\`"
                up_podman
            fi
            ;;
        down)
            export TAIFA_EVENT_SIGNING_KEYS="${TAIFA_EVENT_SIGNING_KEYS:-unused-for-down}"
            export TAIFA_WEBHOOK_SECRET_KEYS="${TAIFA_WEBHOOK_SECRET_KEYS:-unused-for-down}"
            export TAIFA_API_JWT_SECRET="${TAIFA_API_JWT_SECRET:-unused-for-down}"
            if docker_engine; then
                docker compose -p "$PROJECT" -f "$FILE" down -v
            else
                down_podman
            fi
            ;;
        *) die "usage: $0 up|down" ;;
    esac
fi
