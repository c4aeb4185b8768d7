#!/usr/bin/env bash
# Installs the system packages the local stack needs when they are missing (apt-get, as root);
# otherwise says exactly what to install. Idempotent and quiet when everything is present.
set -euo pipefail

missing=()
have_postgres() { command -v postgres >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; }
have_postgres || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v swaks >/dev/null 2>&1 || missing+=(swaks)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "missing system packages: ${missing[*]}" >&2
    echo "install them (Debian/Ubuntu: sudo apt-get install -y ${missing[*]}) and run make again" >&2
    exit 1
fi

echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's postgresql package starts a cluster of its own; the local stack runs its own processes.
if command -v pg_ctlcluster >/dev/null 2>&1; then
    service postgresql stop >/dev/null 2>&1 || true
fi
service redis-server stop >/dev/null 2>&1 || true
