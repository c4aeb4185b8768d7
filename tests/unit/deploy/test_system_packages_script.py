"""deploy/scripts/system-packages.sh (run by `make setup` as root) must never touch a PostgreSQL or Redis the
machine already had: only a service that this run installed may be kept from starting or stopped.

The script runs for real, with fake `apt-get`, `service`, `systemctl`, `dpkg` and `id` first on PATH (shell stubs
in a temporary directory that record every call). The fake `apt-get install` behaves as Debian's maintainer
scripts do: each package's postinst asks policy-rc.d whether it may start its service (`invoke-rc.d`,
`deb-systemd-invoke`) and starts it with `service` when allowed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.deploy.conftest import REPO

SCRIPT = REPO / "deploy" / "scripts" / "system-packages.sh"
BASH = shutil.which("bash") or "/bin/bash"
# The only real programs the script and the stubs may use; everything else on PATH is a stub.
COREUTILS = ("cat", "chmod", "rm", "mkdir", "mv", "touch", "dirname", "basename")

FAKE_APT_GET = r"""#!/bin/sh
# Fake apt-get: records the call; `install` runs each package's "postinst".
echo "apt-get $*" >> "$FAKE_LOG"
[ "$1" = install ] || exit 0
for arg in "$@"; do
    case "$arg" in
        postgresql) unit=postgresql ;;
        redis-server) unit=redis-server ;;
        -*|install) continue ;;
        *) unit= ;;
    esac
    case "$arg" in
        postgresql) mkdir -p "$TAIFA_POSTGRESQL_LIB/15/bin"; : > "$TAIFA_POSTGRESQL_LIB/15/bin/postgres"
                    : > "$FAKE_BIN/pg_ctlcluster"; chmod +x "$FAKE_BIN/pg_ctlcluster" ;;
        nodejs) : > "$FAKE_BIN/node"; chmod +x "$FAKE_BIN/node" ;;
        *) : > "$FAKE_BIN/$arg"; chmod +x "$FAKE_BIN/$arg" ;;
    esac
    [ -n "$unit" ] || continue
    # What invoke-rc.d and deb-systemd-invoke do in the package's postinst.
    rc=0
    if [ -x "$TAIFA_POLICY_RC_D" ]; then
        "$TAIFA_POLICY_RC_D" "$unit" start; rc=$?
        "$TAIFA_POLICY_RC_D" "$unit.service" start || true
    fi
    echo "policy-rc.d $unit start -> $rc" >> "$FAKE_LOG"
    if [ "$rc" -ne 101 ]; then
        service "$unit" start
    fi
done
"""

RECORDER = """#!/bin/sh
echo "{name} $*" >> "$FAKE_LOG"
"""

FAKE_ID = """#!/bin/sh
[ "$1" = -u ] && echo 0 && exit 0
echo "uid=0(root) gid=0(root)"
"""

# What `make images` and the image tests need (podman with runc, mmdebstrap for the base image).
CONTAINER_TOOLS = ("podman", "runc", "iptables", "mmdebstrap")

PERMISSIVE_POLICY = "#!/bin/sh\n# the machine's own policy: every action allowed\nexit 0\n"


@dataclass
class Machine:
    """A fake Debian machine: stub bin directory, PostgreSQL library tree, policy-rc.d path, call log."""

    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def pg_lib(self) -> Path:
        return self.root / "usr-lib-postgresql"

    @property
    def policy(self) -> Path:
        return self.root / "policy-rc.d"

    @property
    def log(self) -> Path:
        return self.root / "calls.log"

    def has(self, *programs: str) -> None:
        """Programs already installed (PostgreSQL as Debian lays it out, with postgresql-common's tools)."""
        for program in programs:
            if program == "postgres":
                (self.pg_lib / "15" / "bin").mkdir(parents=True, exist_ok=True)
                (self.pg_lib / "15" / "bin" / "postgres").touch()
                self._stub("pg_ctlcluster", "#!/bin/sh\nexit 0\n")
            else:
                self._stub(program, "#!/bin/sh\nexit 0\n")

    def _stub(self, name: str, text: str) -> None:
        path = self.bin / name
        path.write_text(text)
        path.chmod(0o755)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def run(self, **extra: str) -> subprocess.CompletedProcess[str]:
        env = {
            **extra,
            "PATH": f"{self.bin}:{self.root / 'coreutils'}",
            "FAKE_LOG": str(self.log),
            "FAKE_BIN": str(self.bin),
            "TAIFA_POLICY_RC_D": str(self.policy),
            "TAIFA_POSTGRESQL_LIB": str(self.pg_lib),
            "HOME": str(self.root),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }
        return subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    m = Machine(tmp_path)
    m.bin.mkdir()
    coreutils = tmp_path / "coreutils"
    coreutils.mkdir()
    for name in COREUTILS:
        real = shutil.which(name)
        assert real, f"{name} is needed by the test"
        (coreutils / name).symlink_to(real)
    m._stub("apt-get", FAKE_APT_GET)
    for name in ("service", "systemctl", "dpkg", "invoke-rc.d", "deb-systemd-invoke"):
        m._stub(name, RECORDER.format(name=name))
    m._stub("id", FAKE_ID)
    m.has(*CONTAINER_TOOLS)  # present unless a test removes them (test_missing_podman_installs_its_stack)
    return m


def touched(calls: list[str], service: str) -> list[str]:
    """Calls that started, stopped or restarted a service by hand (not through the install)."""
    tools = ("service ", "systemctl ", "invoke-rc.d ", "deb-systemd-invoke ")
    return [c for c in calls if c.startswith(tools) and service in c]


def test_nothing_missing_installs_nothing_and_touches_no_service(machine: Machine) -> None:
    machine.has("postgres", "redis-server", "swaks", "node", "npm", "chromium")

    result = machine.run()

    assert result.returncode == 0, result.stderr
    assert machine.calls() == []
    assert result.stdout == ""
    assert not machine.policy.exists()


def test_installing_redis_never_stops_the_machines_own_running_postgresql(machine: Machine) -> None:
    machine.has("postgres", "swaks", "node", "npm", "chromium")

    result = machine.run()

    assert result.returncode == 0, result.stderr
    calls = machine.calls()
    assert "apt-get install -y -qq --no-install-recommends redis-server" in calls
    assert touched(calls, "postgresql") == [], calls
    # The new redis-server was kept from starting by the temporary policy-rc.d, which is gone afterwards.
    assert "policy-rc.d redis-server start -> 101" in calls
    assert touched(calls, "redis-server") == [], calls
    assert not machine.policy.exists()


def test_both_missing_are_installed_without_ever_being_started(machine: Machine) -> None:
    machine.has("swaks", "node", "npm", "chromium")

    result = machine.run()

    assert result.returncode == 0, result.stderr
    calls = machine.calls()
    assert "apt-get install -y -qq --no-install-recommends postgresql redis-server" in calls
    assert "policy-rc.d postgresql start -> 101" in calls
    assert "policy-rc.d redis-server start -> 101" in calls
    assert touched(calls, "postgresql") == [] and touched(calls, "redis-server") == [], calls
    assert not machine.policy.exists(), "the temporary policy-rc.d is removed"


def test_the_temporary_policy_forbids_only_the_services_being_installed(machine: Machine) -> None:
    machine.has("swaks", "node", "npm", "chromium")
    # Capture the policy while apt-get runs: ask it about other services too.
    probe = FAKE_APT_GET.replace(
        'echo "apt-get $*" >> "$FAKE_LOG"',
        'echo "apt-get $*" >> "$FAKE_LOG"\n'
        'if [ "$1" = install ]; then "$TAIFA_POLICY_RC_D" ssh restart; echo "policy-rc.d ssh -> $?" >> "$FAKE_LOG"; '
        '"$TAIFA_POLICY_RC_D" postgresql@15-main.service start; echo "policy-rc.d pg@ -> $?" >> "$FAKE_LOG"; '
        '"$TAIFA_POLICY_RC_D" --quiet redis-server restart; echo "policy-rc.d quiet -> $?" >> "$FAKE_LOG"; fi',
    )
    machine._stub("apt-get", probe)

    assert machine.run().returncode == 0
    calls = machine.calls()
    # Any other service: as without a policy-rc.d (invoke-rc.d blocks everything when there is no init system).
    assert f"policy-rc.d ssh -> {0 if Path('/sbin/init').exists() else 101}" in calls
    assert "policy-rc.d pg@ -> 101" in calls
    assert "policy-rc.d quiet -> 101" in calls, "invoke-rc.d passes --quiet before the service name"


def test_a_policy_the_machine_already_has_is_left_alone_and_only_what_this_run_installed_is_stopped(
    machine: Machine,
) -> None:
    machine.has("postgres", "swaks", "node", "npm", "chromium")
    machine.policy.write_text(PERMISSIVE_POLICY)
    machine.policy.chmod(0o755)

    result = machine.run()

    assert result.returncode == 0, result.stderr
    calls = machine.calls()
    assert "policy-rc.d redis-server start -> 0" in calls, "the machine's policy let the package start it"
    assert "service redis-server stop" in calls, "so this run stops the redis-server it installed"
    assert touched(calls, "postgresql") == [], calls
    assert machine.policy.read_text() == PERMISSIVE_POLICY


def test_without_root_it_names_the_missing_packages_and_installs_nothing(machine: Machine) -> None:
    machine.has("postgres", "swaks", "node", "npm", "chromium")
    machine._stub("id", '#!/bin/sh\n[ "$1" = -u ] && echo 1000 && exit 0\n')

    result = machine.run()

    assert result.returncode == 1
    assert "missing system packages: redis-server" in result.stderr
    assert machine.calls() == []


def test_a_failed_install_still_removes_the_temporary_policy(machine: Machine) -> None:
    machine.has("postgres", "swaks", "node", "npm", "chromium")
    machine._stub("apt-get", '#!/bin/sh\necho "apt-get $*" >> "$FAKE_LOG"\n[ "$1" = install ] && exit 100\nexit 0\n')

    result = machine.run()

    assert result.returncode == 100
    assert not machine.policy.exists(), "a leftover policy-rc.d would keep forbidding redis-server for good"


def test_swaks_without_perls_tls_modules_gets_them_installed(machine: Machine) -> None:
    machine.has("postgres", "redis-server", "swaks", "node", "npm", "chromium")
    machine._stub("perl", "#!/bin/sh\nexit 2\n")  # Net::SSLeay / IO::Socket::SSL cannot be loaded

    result = machine.run()

    assert result.returncode == 0, result.stderr
    assert "apt-get install -y -qq --no-install-recommends libnet-ssleay-perl libio-socket-ssl-perl" in machine.calls()


def test_a_missing_swaks_comes_with_its_tls_modules(machine: Machine) -> None:
    machine.has("postgres", "redis-server", "node", "npm", "chromium")

    result = machine.run()

    assert result.returncode == 0, result.stderr
    assert (
        "apt-get install -y -qq --no-install-recommends swaks libnet-ssleay-perl libio-socket-ssl-perl"
        in machine.calls()
    )


def test_a_missing_chromium_is_installed_for_the_console_browser_tests(machine: Machine) -> None:
    machine.has("postgres", "redis-server", "swaks", "node", "npm")

    result = machine.run()

    assert result.returncode == 0, result.stderr
    assert "apt-get install -y -qq --no-install-recommends chromium" in machine.calls()


def test_missing_podman_installs_its_stack_and_mmdebstrap(machine: Machine) -> None:
    machine.has("postgres", "redis-server", "swaks", "node", "npm", "chromium")
    for tool in CONTAINER_TOOLS:
        (machine.bin / tool).unlink()

    result = machine.run()

    assert result.returncode == 0, result.stderr
    installs = [c for c in machine.calls() if c.startswith("apt-get install")]
    assert len(installs) == 1
    assert set(installs[0].split()) >= {"podman", "netavark", "aardvark-dns", "runc", "iptables", "mmdebstrap"}


def test_the_local_stack_needs_neither_the_container_tools_nor_chromium(machine: Machine) -> None:
    """`make dev` (TAIFA_PACKAGES=dev) on a machine with only the stack's packages: nothing to install, as
    README.md says; the test suite's set still asks for podman and Chromium there."""
    for name in CONTAINER_TOOLS:
        (machine.bin / name).unlink()
    machine._stub("id", '#!/bin/sh\n[ "$1" = -u ] && echo 1000 && exit 0\n')
    machine.has("postgres", "redis-server", "swaks", "node", "npm")

    assert machine.run(TAIFA_PACKAGES="dev").returncode == 0
    suite = machine.run()
    assert suite.returncode == 1
    assert "podman" in suite.stderr and "chromium" in suite.stderr and "postgresql" not in suite.stderr


def test_a_python_without_venv_support_gets_python3_venv_before_the_virtualenv_is_made(machine: Machine) -> None:
    machine.has("postgres", "redis-server", "swaks", "node", "npm", "chromium")
    machine._stub("python3", "#!/bin/sh\nexit 1\n")  # Debian's python3 without python3-venv: no ensurepip

    result = machine.run(TAIFA_NEW_VENV_PYTHON=str(machine.bin / "python3"))

    assert result.returncode == 0, result.stderr
    assert "apt-get install -y -qq --no-install-recommends python3-venv" in machine.calls()
    assert machine.run().returncode == 0  # the virtualenv exists: the interpreter is not asked again
