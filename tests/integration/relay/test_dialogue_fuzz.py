"""Case C8 of docs/testing.md: a Hypothesis state machine drives random SMTP dialogues at a live relay.

Invariants: every reply is well formed, no exception text leaks, no MAIL is accepted before AUTH,
no AUTH succeeds before TLS, the relay keeps serving, and once every dialogue is closed the relay tracks
no session, client address or login any more (no per-connection state left behind). The default suite
runs it bounded (25 dialogues of 25 steps); `make fuzz-relay` runs the long version
(TAIFA_RELAY_FUZZ_EXAMPLES / TAIFA_RELAY_FUZZ_STEPS) and prints the number of commands sent."""

from __future__ import annotations

import os
import re
import time
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from tests.integration.relay.support import Certs, Credential, Credentials, Raw, plain_auth_arg

EXAMPLES = int(os.environ.get("TAIFA_RELAY_FUZZ_EXAMPLES", "25"))
STEPS = int(os.environ.get("TAIFA_RELAY_FUZZ_STEPS", "25"))

REPLY = re.compile(r"^[2-5]\d\d[ -]")
# "Internal error" is the relay's answer to an exception a command raised (handle_exception): well formed, but a
# crash all the same (C8: no unhandled exception), which the other strings would not show.
LEAKS = ("Error: (", "Traceback", "Exception", "redis", "Redis", "Internal error")

addresses = st.sampled_from(
    [
        "<app@{own}>",
        "<x@evil.example>",
        "<>",
        "<a@b@c>",
        "<@r:x@{own}>",
        "<{own}>",
        "junk",
        "<app@sub.{own}> SIZE=100",
        "<app@{own}> SIZE=999999999999",
        "<app@{own}> BODY=8BITMIME",
    ]
)
garbage = st.binary(min_size=0, max_size=80).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))
bodies = st.lists(
    st.sampled_from(
        [
            b"From: app@{own}\r\n",
            b"From: x@evil.example\r\n",
            b"\r\n",
            b"text\r\n",
            b"..\r\n",
            b"bare\nlf\r\n",
            b"bare\rcr\r\n",
            b"x" * 1200 + b"\r\n",
        ]
    ),
    max_size=8,
)


def test_c8_random_dialogues_keep_the_invariants(make_relay: Any, certs: Certs, credentials: Credentials) -> None:
    relay = make_relay(
        relay_error_delay_seconds=0.0,
        relay_max_auth_failures_per_address=1_000_000,
        relay_max_auth_failures_per_address_username=1_000_000,
        relay_idle_timeout_seconds=5,
    )
    cred = credentials.create()
    sent = [0]
    began = time.monotonic()

    class Dialogue(RuleBasedStateMachine):
        raw: Raw
        credential: Credential = cred

        @initialize()
        def connect(self) -> None:
            self.raw = Raw(relay.submission_port, certs=certs, timeout=5)
            self.tls = False
            self.authenticated = False
            self.closed = False
            self.expect(self.raw.reply(), "220")

        def teardown(self) -> None:
            self.raw.close()

        def expect(self, reply: str, *codes: str) -> str:
            assert REPLY.match(reply), reply
            assert not any(leak in reply for leak in LEAKS), reply
            if codes:
                assert reply[:3] in codes, reply
            if reply.startswith(("421", "454 4.7.0 Too many", "521")):
                self.closed = True
            return reply

        def send(self, line: bytes) -> str | None:
            if self.closed:
                return None
            sent[0] += 1
            try:
                reply = self.raw.command(line + b"\r\n")
            except (ConnectionError, OSError):
                self.closed = True
                return None
            return self.expect(reply)

        def fill(self, template: str | bytes) -> bytes:
            text = template if isinstance(template, bytes) else template.encode()
            return text.replace(b"{own}", self.credential.domain.encode())

        @rule()
        def ehlo(self) -> None:
            reply = self.send(b"EHLO fuzz.test")
            if reply and not self.tls:
                assert "AUTH" not in reply
            if reply:  # a refused EHLO (before STARTTLS completes, say) leaves no login behind
                self.authenticated = self.authenticated and reply.startswith("250")

        @rule()
        def starttls(self) -> None:
            reply = self.send(b"STARTTLS")
            if reply and reply.startswith("220") and not self.tls:
                self.raw.buffer = b""
                self.raw.starttls()
                self.tls = True
                self.authenticated = False

        @rule(good=st.booleans(), mechanism=st.sampled_from(["PLAIN", "LOGIN"]))
        def auth(self, good: bool, mechanism: str) -> None:
            password = self.credential.password if good else "nope"
            if mechanism == "PLAIN":
                reply = self.send(f"AUTH PLAIN {plain_auth_arg(self.credential.username, password)}".encode())
            else:
                import base64

                reply = self.send(b"AUTH LOGIN")
                if reply and reply.startswith("334"):
                    reply = self.send(base64.b64encode(self.credential.username.encode()))
                    if reply and reply.startswith("334"):
                        reply = self.send(base64.b64encode(password.encode()))
            if reply and reply.startswith("235"):
                assert self.tls, "AUTH succeeded before TLS"
                assert good
                self.authenticated = True

        @rule(address=addresses)
        def mail(self, address: str) -> None:
            reply = self.send(b"MAIL FROM:" + self.fill(address))
            if reply and reply.startswith("250"):
                assert self.authenticated and self.tls, "MAIL accepted without AUTH"

        @rule(address=addresses)
        def rcpt(self, address: str) -> None:
            reply = self.send(b"RCPT TO:" + self.fill(address))
            if reply and reply.startswith("250"):
                assert self.authenticated

        @rule(body=bodies)
        def data(self, body: list[bytes]) -> None:
            reply = self.send(b"DATA")
            if reply and reply.startswith("354"):
                assert self.authenticated
                self.send(b"".join(self.fill(part) for part in body) + b"\r\n.")

        @rule(verb=st.sampled_from([b"RSET", b"NOOP", b"HELO fuzz", b"VRFY x", b"HELP", b"QUIT", b"EXPN y"]))
        def simple(self, verb: bytes) -> None:
            reply = self.send(verb)
            if verb == b"QUIT" and reply:
                self.closed = True
            # HELO (like EHLO and RSET) resets the transaction, not the login: RFC 5321 §4.1.4, RFC 4954.

        @rule(line=garbage)
        def noise(self, line: bytes) -> None:
            self.send(line)

        @invariant()
        def reconnect_when_closed(self) -> None:
            if getattr(self, "closed", False):
                self.raw.close()
                self.connect()

    run_state_machine_as_test(
        Dialogue,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
    # Still serving after all that.
    after = Raw(relay.submission_port)
    assert after.reply().startswith("220")
    after.close()
    # Every dialogue is closed: nothing of them may stay behind in the relay (memory bounded by live sessions).
    sessions = relay.relay.parts.sessions
    deadline = time.monotonic() + 30
    while sessions.sessions and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sessions.sessions
    assert not sessions.admission.per_client and not sessions._by_username
    elapsed = time.monotonic() - began
    print(f"\nC8 fuzz: {sent[0]:,} commands in {EXAMPLES} dialogues of up to {STEPS} steps, {elapsed:.0f}s")
