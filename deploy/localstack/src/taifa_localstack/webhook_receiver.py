"""A tiny webhook receiver for `make dev`: answers every POST with 204 and appends it to a JSON-lines log.

Each line is `{"received_at", "path", "headers": {lower-case name: value}, "body": text}`, so that the banner's
example (or `standardwebhooks.Webhook(secret).verify(body, headers)`) can check the signature. GET answers 200 (the
readiness check). Development only: it verifies nothing itself and keeps everything it is sent.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 1024 * 1024


def make_handler(log_file: Path) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(200)

        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
            body = self.rfile.read(length).decode("utf-8", "replace")
            line = {
                "received_at": time.time(),
                "path": self.path,
                "headers": {name.lower(): value for name, value in self.headers.items()},
                "body": body,
            }
            with lock, log_file.open("a") as out:
                out.write(json.dumps(line) + "\n")
            self._answer(204)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True, help="JSON-lines file of the requests received")
    args = parser.parse_args()
    args.log.parent.mkdir(parents=True, exist_ok=True)
    args.log.touch()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.log))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
