"""SMTP on :1025 keeps every message in memory; :8025 lists them as Mailpit's API does (the fields tests read)."""

import email
import email.policy
import http.server
import json
import threading
import time
import uuid

from aiosmtpd.controller import Controller

MESSAGES: list[dict[str, object]] = []
LOCK = threading.Lock()


class Sink:
    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        with LOCK:
            MESSAGES.insert(0, {
                "ID": str(uuid.uuid4()),
                "From": {"Address": envelope.mail_from},
                "To": [{"Address": rcpt} for rcpt in envelope.rcpt_tos],
                "Subject": str(parsed.get("Subject", "")),
                "Created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "Size": len(raw),
                "raw": raw,
            })  # fmt: skip
        return "250 2.0.0 Ok: queued"


class Api(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with LOCK:
            messages = list(MESSAGES)
        if self.path.split("?")[0] in ("/api/v1/messages", "/api/v1/messages/"):
            summaries = [{k: v for k, v in m.items() if k != "raw"} for m in messages]
            self._send(200, "application/json", json.dumps({"total": len(messages), "messages": summaries}).encode())
        elif self.path.startswith("/api/v1/message/") and self.path.endswith("/raw"):
            wanted = self.path.split("/")[4]
            found = [m["raw"] for m in messages if m["ID"] == wanted]
            self._send(200 if found else 404, "message/rfc822", found[0] if found else b"not found")
        elif self.path in ("/", "/livez", "/readyz"):
            self._send(200, "text/plain", b"ok")
        else:
            self._send(404, "text/plain", b"not found")

    def _send(self, status, content_type, body):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


controller = Controller(Sink(), hostname="0.0.0.0", port=1025)
controller.start()
print("stand-in mailpit: SMTP :1025, API :8025", flush=True)
http.server.ThreadingHTTPServer(("0.0.0.0", 8025), Api).serve_forever()
