"""The hooks aiosmtpd calls after parsing MAIL and RCPT: each asks the application and returns the reply string
(aiosmtpd pushes it), filling the envelope only when the application accepted the address."""

from __future__ import annotations

from aiosmtpd.smtp import SMTP, Envelope, Session

from taifa_relay.adapters import metrics
from taifa_relay.application.submission import Accepted, LoggedOut, Submission
from taifa_relay.entrypoints.session_state import RelaySession, forget_login, hook_names


class RelayHandler:
    """The handler object aiosmtpd's protocol takes: one per process, shared by every connection."""

    def __init__(self, submission: Submission) -> None:
        self.submission = submission

    def __dir__(self) -> list[str]:
        return hook_names(type(self), ("handle_", "auth_"))

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        assert isinstance(session, RelaySession)
        decision = await self.submission.mail_from(session.state, address)
        metrics.count_outcomes(decision.outcomes)
        if isinstance(decision, Accepted):
            envelope.mail_from = address
            envelope.mail_options.extend(options)
        elif isinstance(decision, LoggedOut):  # MAIL's re-check, deferred to here (Submission.before_mail)
            forget_login(session)
        return decision.reply

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        assert isinstance(session, RelaySession)
        decision = await self.submission.rcpt_to(session.state, len(envelope.rcpt_tos), address)
        metrics.count_outcomes(decision.outcomes)
        if isinstance(decision, Accepted):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return decision.reply
