"""A small web server on 127.0.0.1 for the link tests: an article, redirects, a big and a slow page."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

ARTICLE_SENTENCE = "The lighthouse keeper rowed to the island every Tuesday with fresh bread."
ARTICLE = f"""<!doctype html><html><head><title>The Lighthouse</title></head><body>
<nav><a href="/">Home</a> | <a href="/about">About us</a> | <a href="/shop">Shop</a></nav>
<article><h1>The Lighthouse</h1>
<p>{ARTICLE_SENTENCE} He had done so for thirty years, in calm weather and in storms.</p>
<p>The island had no shop and no school, only the tower, a small garden and a shed for the boat.
The keeper's daughter learned to read from the labels on the tins of paint and oil.</p>
<p>When the light was automated the keeper stayed on the island, growing potatoes and beans,
and writing letters to the harbour master about the state of the landing steps.</p>
</article><footer>Copyright 2026 Coastal Stories. All rights reserved.</footer></body></html>"""


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return None

    def _send(self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path
        extra = self.server.extra  # type: ignore[attr-defined]
        if path in extra:
            self._send(200, *extra[path])
        elif path == "/article":
            self._send(200, ARTICLE.encode())
        elif path == "/notes.txt":
            self._send(200, b"Buy milk and eggs.", "text/plain")
        elif path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/article")
            self.end_headers()
        elif path.startswith("/loop"):
            n = int(path.removeprefix("/loop") or 0)
            self.send_response(302)
            self.send_header("Location", f"/loop{n + 1}")
            self.end_headers()
        elif path.startswith("/away?to="):  # a redirect to wherever the test says
            self.send_response(302)
            self.send_header("Location", unquote(path.removeprefix("/away?to=")))
            self.end_headers()
        elif path == "/big":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()  # no length: the limit must hold while reading
            for _ in range(2000):
                self.wfile.write(b"<p>" + b"x" * 1000 + b"</p>")
        elif path == "/slow":
            time.sleep(3)
            self._send(200, ARTICLE.encode())
        elif path == "/lease.pdf":
            self._send(200, b"%PDF-1.4 ...", "application/pdf")
        elif path == "/image.png":
            self._send(200, b"\x89PNG\r\n", "image/png")
        else:
            self._send(404, b"not found")


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return None  # a client that stopped reading (the size and time limits) is expected


@contextmanager
def web_server(extra: dict[str, tuple[bytes, str]] | None = None) -> Iterator[str]:
    """Serve on 127.0.0.1; yields the base URL ("http://127.0.0.1:PORT"). ``extra`` adds pages:
    path -> (body, content type)."""
    server = QuietServer(("127.0.0.1", 0), Handler)
    server.extra = extra or {}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
