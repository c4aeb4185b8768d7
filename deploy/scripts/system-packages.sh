#!/usr/bin/env bash
# Installs the system packages the local stack needs when they are missing (apt-get, as root);
# otherwise says exactly what to install. Idempotent and quiet when everything is present.
#
# The local stack runs its own PostgreSQL and Redis processes, so the services that Debian's postgresql and
# redis-server packages start from their postinst are not wanted. A PostgreSQL or Redis the machine already
# had is never touched: only the packages this run installs are kept from starting, with a temporary
# policy-rc.d (the Debian way: invoke-rc.d and deb-systemd-invoke ask it and skip a forbidden start when
# it exits 101) that names only those services and is removed when the script ends. When the machine has a
# policy-rc.d of its own, it is left alone, and the services this run installed are stopped afterwards.
set -euo pipefail

# Overridable for the unit test (tests/unit/deploy/test_system_packages_script.py) only.
POLICY_RC_D=${TAIFA_POLICY_RC_D:-/usr/sbin/policy-rc.d}
POSTGRESQL_LIB=${TAIFA_POSTGRESQL_LIB:-/usr/lib/postgresql}

missing=()
have_postgres() { command -v postgres >/dev/null 2>&1 || compgen -G "$POSTGRESQL_LIB/*/bin/postgres" >/dev/null; }
have_postgres || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# swaks speaks TLS through Perl's Net::SSLeay / IO::Socket::SSL, which it only recommends: without them every
# `swaks --tls` of the tests says "TLS not available".
swaks_tls=(libnet-ssleay-perl libio-socket-ssl-perl)
if ! command -v swaks >/dev/null 2>&1; then
    missing+=(swaks "${swaks_tls[@]}")
elif command -v perl >/dev/null 2>&1 && ! perl -MNet::SSLeay -MIO::Socket::SSL -e1 >/dev/null 2>&1; then
    missing+=("${swaks_tls[@]}")
fi
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# The Makefile's `python3 -m venv` (only before .venv exists: the Makefile passes the interpreter then): Debian
# ships venv's ensurepip in python3-venv.
if [ -n "${TAIFA_NEW_VENV_PYTHON:-}" ] && ! "$TAIFA_NEW_VENV_PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
# Everything above is what the local stack (`make dev`, TAIFA_PACKAGES=dev) needs; the rest only the test suite.
if [ "${TAIFA_PACKAGES:-test}" != dev ]; then
    # The container images and their tests (`make images`, tests/images): rootful podman with runc (crun 1.8
    # refuses the test VMs' cgroups), its network stack, and mmdebstrap for the base image from Debian's packages.
    command -v podman >/dev/null 2>&1 || missing+=(podman netavark aardvark-dns)
    command -v runc >/dev/null 2>&1 || missing+=(runc)
    command -v iptables >/dev/null 2>&1 || missing+=(iptables)
    command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
    # The console's browser tests (tests/e2e, Playwright) drive Debian's Chromium headless; no browser is downloaded.
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
# `make bench-relay` only (TAIFA_BENCH_PACKAGES=1): Postfix 3.7 with Cyrus SASL (sasldb: saslpasswd2; the PLAIN and
# LOGIN mechanisms are in libsasl2-modules) as the peer of the relay's benchmark, run as a private instance by the
# bench itself. Debian's own postfix service is never configured ("No configuration", preseeded) nor started.
bench_packages=()
if [ "${TAIFA_BENCH_PACKAGES:-0}" = 1 ]; then
    [ -x /usr/sbin/postfix ] || command -v postfix >/dev/null 2>&1 || bench_packages+=(postfix)
    [ -x /usr/sbin/saslpasswd2 ] || command -v saslpasswd2 >/dev/null 2>&1 || bench_packages+=(sasl2-bin)
    compgen -G "/usr/lib/*/sasl2/libplain.so*" >/dev/null || bench_packages+=(libsasl2-modules)
    missing+=("${bench_packages[@]}")
fi

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "missing system packages: ${missing[*]}" >&2
    echo "install them (Debian/Ubuntu: sudo apt-get install -y ${missing[*]}) and run make again" >&2
    if [ ${#bench_packages[@]} -gt 0 ]; then
        echo "(postfix: answer 'No configuration' and keep its service stopped: the benchmark runs its own instance)" >&2
    fi
    exit 1
fi

# The services (init script / systemd unit names) of the packages this run installs.
new_services=()
for package in "${missing[@]}"; do
    case "$package" in
        postgresql | redis-server) new_services+=("$package") ;;
        postfix) new_services+=(postfix) ;;
        sasl2-bin) new_services+=(saslauthd) ;;
    esac
done

own_policy=0
remove_policy() { if [ "$own_policy" -eq 1 ]; then rm -f "$POLICY_RC_D"; fi; }
trap remove_policy EXIT
trap 'exit 130' INT TERM HUP
if [ ${#new_services[@]} -gt 0 ] && [ ! -e "$POLICY_RC_D" ]; then
    patterns=""
    for service in "${new_services[@]}"; do
        patterns+="${patterns:+ | }$service | $service.service | $service@*"
    done
    # noclobber: never replace a policy-rc.d that appeared meanwhile.
    if (
        set -o noclobber
        cat >"$POLICY_RC_D" <<POLICY
#!/bin/sh
# Temporary, written by deploy/scripts/system-packages.sh (taifa) while apt-get installs: forbids
# every action on the services being installed, and is removed when the install ends. Any other
# service is answered as without a policy-rc.d (invoke-rc.d blocks all when there is no /sbin/init).
while [ "\${1#-}" != "\$1" ]; do shift; done
case "\$1" in
    $patterns) exit 101 ;;
esac
[ -e /sbin/init ] || exit 101
exit 0
POLICY
    ) 2>/dev/null; then
        own_policy=1
        chmod 755 "$POLICY_RC_D"
    fi
fi

echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if [ ${#bench_packages[@]} -gt 0 ] && command -v debconf-set-selections >/dev/null 2>&1; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# Without our policy in force the new packages may have started their services: stop those, and only those.
if [ "$own_policy" -eq 0 ]; then
    for service in "${new_services[@]}"; do
        service "$service" stop >/dev/null 2>&1 || true
    done
fi
