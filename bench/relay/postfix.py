"""A private Postfix 3.7 instance for `make bench-relay`: the relay's real peer, a submission server that relays.

Started with `postfix -c DIR start` (no postmulti, Debian's own instance untouched): its own config directory, queue
and data directory under the bench's temp dir, one smtpd listener on a loopback port. STARTTLS required
(`smtpd_tls_security_level = encrypt`, the relay's ECDSA P-256 certificate), AUTH PLAIN/LOGIN only after TLS
(`smtpd_tls_auth_only`) through Cyrus SASL with a sasldb of one user, `permit_sasl_authenticated, reject` for relaying,
`relayhost` = the sink the relay forwards to, in plaintext as the relay's bench upstream. No chroot, logs to a file in
the instance (postlogd). Needs root (Postfix's master runs as root) and the packages postfix, sasl2-bin and
libsasl2-modules (`make bench-packages`).

CPU: the instance's processes come and go (smtpd per connection, smtp per delivery), so its CPU is that of the master's
process tree (`server_cpu.tree_cpu_seconds`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from server_cpu import tree_cpu_seconds

POSTFIX = "/usr/sbin/postfix"
SASLPASSWD2 = "/usr/sbin/saslpasswd2"
USER, REALM = "bench", "postfix.bench"
# The services of Debian's master.cf that a relaying submission server uses; every one without chroot.
_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def available() -> str | None:
    """None when Postfix can run here; else why not (the bench then runs without it and says so)."""
    if os.geteuid() != 0:
        return "not root (Postfix's master runs as root)"
    for path in (POSTFIX, SASLPASSWD2):
        if not os.access(path, os.X_OK):
            return f"{path} missing (make bench-packages installs postfix, sasl2-bin, libsasl2-modules)"
    return None


class PostfixInstance:
    """One private Postfix on `port` relaying to 127.0.0.1:`sink_port`, with a sasldb of USER@REALM."""

    def __init__(self, root: Path, port: int, sink_port: int, cert: Path, key: Path, queue_parent: Path | None) -> None:
        self.root = root
        self.port = port
        self.config = root / "etc"
        queue_root = Path(os.path.realpath(queue_parent)) / f"postfix-{os.getpid()}" if queue_parent else root
        self.queue = queue_root / "queue"
        self.data = root / "data"
        self.password = os.urandom(12).hex()
        self.login = f"{USER}@{REALM}"
        self._sink_port = sink_port
        self._cert, self._key = cert, key
        self._queue_root = queue_root
        self._master: int | None = None

    def _write_config(self) -> None:
        for path in (self.config, self.config / "sasl", self.queue, self.data):
            path.mkdir(parents=True, exist_ok=True)
        defaults = subprocess.run(
            ["/usr/sbin/postconf", "-d", "daemon_directory", "shlib_directory", "meta_directory"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        sasldb = self.root / "sasldb2"
        main = f"""\
compatibility_level = 3.6
{defaults}queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench
mydomain = postfix.bench
myorigin = $myhostname
mydestination =
local_recipient_maps =
local_transport = error:no local delivery
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
relayhost = [127.0.0.1]:{self._sink_port}
smtp_tls_security_level = none
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_tls_cert_file = {self._cert}
smtpd_tls_key_file = {self._key}
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_session_cache_database =
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = {self.config / "sasl"}
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
message_size_limit = 10240000
default_process_limit = 300
maillog_file = {self.root / "maillog"}
maillog_file_prefixes = {self.root}
"""
        (self.config / "main.cf").write_text(main)
        listener = f"127.0.0.1:{self.port} inet n - n - - smtpd\n"
        (self.config / "master.cf").write_text(listener + _SERVICES)
        (self.config / "sasl" / "smtpd.conf").write_text(
            f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: {sasldb}\n"
        )
        subprocess.run(
            [SASLPASSWD2, "-p", "-c", "-f", str(sasldb), "-u", REALM, USER],
            input=self.password.encode(),
            check=True,
        )
        shutil.chown(sasldb, "postfix", "postfix")
        os.chmod(sasldb, 0o600)
        # The instance's files reachable by its unprivileged daemons (mkdtemp makes the bench's work dir 0700).
        os.chmod(self.root.parent, 0o711)  # noqa: S103 - directories of a throwaway instance
        for path in (self.root, self.config, self.config / "sasl"):
            os.chmod(path, 0o755)  # noqa: S103 - no secret in them but the sasldb (0600)
        shutil.chown(self.data, "postfix", "postfix")

    def start(self) -> None:
        self._write_config()
        subprocess.run([POSTFIX, "-c", str(self.config), "start"], check=True, capture_output=True)
        pid_file = self.queue / "pid" / "master.pid"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text().strip():
                self._master = int(pid_file.read_text().strip())
                return
            time.sleep(0.05)
        raise RuntimeError(f"postfix did not start: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return "\n".join((self.root / "maillog").read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no maillog)"

    def cpu_seconds(self) -> float:
        assert self._master is not None
        return tree_cpu_seconds(self._master)

    def queued(self) -> int:
        """Messages still in the queue (not yet delivered to the sink)."""
        return sum(
            len(files) for name in ("incoming", "active", "deferred") for _, _, files in os.walk(self.queue / name)
        )

    def wait_delivered(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.queued():
            if time.monotonic() > deadline:
                raise RuntimeError(f"postfix queue not drained in {timeout:g} s: {self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._master is not None:
            subprocess.run([POSTFIX, "-c", str(self.config), "stop"], check=False, capture_output=True)
            deadline = time.monotonic() + 15
            while Path(f"/proc/{self._master}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            if Path(f"/proc/{self._master}").exists():
                subprocess.run([POSTFIX, "-c", str(self.config), "abort"], check=False, capture_output=True)
            self._master = None
        if self._queue_root != self.root:
            shutil.rmtree(self._queue_root, ignore_errors=True)
