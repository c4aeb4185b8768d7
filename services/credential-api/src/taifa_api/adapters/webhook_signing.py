"""Standard Webhooks signatures with the `standardwebhooks` package (the reference implementation): `webhook-id`,
`webhook-timestamp` (Unix seconds) and `webhook-signature`, `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per
secret, space-separated (the current secret first; the previous one too during a rotation's 24 h)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook


class StandardWebhooksSigner:
    def headers(self, message_id: str, timestamp: datetime, body: bytes, secrets: Sequence[str]) -> dict[str, str]:
        if not secrets:
            raise ValueError("an endpoint without a signing secret cannot be delivered to")
        moment = timestamp.astimezone(UTC)
        text = body.decode()
        signatures = [Webhook(secret).sign(message_id, moment, text) for secret in secrets]
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(math.floor(moment.timestamp())),
            "webhook-signature": " ".join(signatures),
        }
