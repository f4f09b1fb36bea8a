"""A stand-in for Slack and Teams incoming webhooks: an HTTP server on 127.0.0.1 in a thread
that records every request and answers as told.

``server.script[path]`` is a list of answers ``(status, headers, body)`` used one per request
to that path, first to last; once it is empty the path answers 200 ``ok``. ``server.requests``
holds ``(path, headers, json body)`` in the order they came.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookServer:
    def __init__(self):
        self.requests: list[tuple[str, dict, object]] = []
        self.script: dict[str, list[tuple[int, dict, str]]] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw.decode("utf-8"))
                except ValueError:
                    body = raw
                with server.lock:
                    server.requests.append((self.path, dict(self.headers), body))
                    answers = server.script.get(self.path) or []
                    status, headers, text = answers.pop(0) if answers else (200, {}, "ok")
                data = text.encode("utf-8")
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def posts(self, path: str) -> list:
        """The JSON bodies posted to ``path``, in order."""
        return [body for p, _, body in self.requests if p == path]


@contextmanager
def webhook_server():
    """A running ``WebhookServer``; stopped at the end."""
    server = WebhookServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(timeout=10)
