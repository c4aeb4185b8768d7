"""AUTH PLAIN and LOGIN for the relay's SMTP protocol (RFC 4954), each login judged by the application; split from
`smtp_protocol` to keep each module short."""

from __future__ import annotations

import asyncio
import time
from base64 import b64decode, b64encode
from typing import Any

from aiosmtpd.smtp import MISSING, AuthResult

from taifa_relay.adapters import metrics
from taifa_relay.application.submission import Accepted, Close, Submission
from taifa_relay.domain import replies
from taifa_relay.entrypoints.tls_upgrade import TLSUpgradingSMTP


class AuthenticatingSMTP(TLSUpgradingSMTP):
    """The AUTH mechanisms and the line reading they share with the command loop; `RelaySMTP` is the class served."""

    submission: Submission

    async def close_with(self, status: str) -> None:
        raise NotImplementedError  # RelaySMTP's: a final reply, then the connection closed

    async def _read_line(self) -> bytes | None:
        """The next line; None when it was too long: discarded up to its end without being kept, and refused."""
        try:
            line: bytes = await self._reader.readuntil()
        except asyncio.LimitOverrunError as error:
            await self._reader.read(error.consumed)
            while True:
                try:
                    await self._reader.readuntil()
                    break
                except asyncio.LimitOverrunError as more:
                    await self._reader.read(more.consumed)
            await self.push(replies.LINE_TOO_LONG)
            return None
        return line

    async def challenge_auth(
        self, challenge: str | bytes, encode_to_b64: bool = True, log_client_response: bool = False
    ) -> bytes | Any:
        """aiosmtpd's 334 challenge, its answer read like a command line: one over the limit is discarded and
        refused (500 5.5.2) instead of raising (aiosmtpd's readline: a traceback and 451, and the rest of a long
        line read as commands). MISSING after a refusal already sent (too long, `*`, bad base64): the AUTH ends
        with that one reply. The client's answer is never logged."""
        data = challenge.encode() if isinstance(challenge, str) else challenge
        await self.push(b"334 " + (b64encode(data) if encode_to_b64 else data))
        line = await self._read_line()
        if line is None:
            return MISSING
        blob = line.strip()
        if blob == b"*":  # RFC 4954: the client cancels
            await self.push(replies.AUTH_ABORTED)
            return MISSING
        try:
            return b64decode(blob, validate=True)
        except ValueError:
            await self.push(replies.BAD_BASE64)
            return MISSING

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = b64decode(args[1].encode(), validate=True)
            except ValueError:
                await self.push(replies.BAD_BASE64)
                return AuthResult(success=False, handled=True)
        assert isinstance(blob, bytes)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await self.push(replies.BAD_AUTH_VALUE)
            return AuthResult(success=False, handled=True)
        return await self._check_credentials(parts[1], parts[2], authzid=parts[0])

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
            if login is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = b64decode(args[1].encode(), validate=True)
            except ValueError:
                await self.push(replies.BAD_BASE64)
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        assert isinstance(login, bytes) and isinstance(password, bytes)
        return await self._check_credentials(login, password)

    async def _check_credentials(self, login: bytes, password: bytes, authzid: bytes = b"") -> AuthResult:
        """Ask the application; aiosmtpd answers an accepted or refused AUTH itself (from the result's message)."""
        started = time.perf_counter()
        try:
            decision = await self.submission.authenticate(self.relay_session.state, login, password, authzid)
        finally:
            metrics.AUTH_SECONDS.observe(time.perf_counter() - started)
        metrics.count_outcomes(decision.outcomes)
        if isinstance(decision, Accepted):
            return AuthResult(success=True, auth_data=self.relay_session.state.credential_id, message=decision.reply)
        if isinstance(decision, Close):
            await self.close_with(decision.reply)
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=decision.reply)
