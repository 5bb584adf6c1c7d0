"""``minicnn serve``: a local web page to draw a digit on, and the JSON API behind it.

The standard library's ``ThreadingHTTPServer``: one thread per connection, so slow clients do not
hold up others, and no dependency to install or keep up to date. Every request is checked before
its body is read (method, path, content type, length), images are refused by their pixel
dimensions before they are decoded, and the model answers one request at a time (numba's
thread pool takes one caller at a time), so its memory is a batch of one whatever the load.

    POST /api/predict   body: PNG or JPEG bytes -> {"digit", "probabilities", "input"}
    GET  /api/health    -> {"status": "ok", "model": ...}
    GET  /              the page (minicnn/web/: HTML, CSS and JS, no build step, no CDN)
"""

from __future__ import annotations

import ipaddress
import json
import signal
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from minicnn import preprocessing

MAX_BODY = 2 << 20  # bytes: a photo of a digit needs far less
IMAGE_TYPES = ("image/png", "image/jpeg")
WEB = Path(__file__).parent / "web"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def static_files() -> dict[str, Path]:
    """URL path -> file, for exactly the files shipped in minicnn/web/: a request names one of
    these or gets a 404, so no path (``..``, encoded or not) can reach anything else."""
    files = {f"/{p.name}": p for p in WEB.iterdir() if p.suffix in STATIC_TYPES}
    files["/"] = WEB / "index.html"
    return files


class DigitReader:
    """The model behind the API: decodes two images at a time at most (each bounded by
    preprocessing.MAX_PIXELS) and runs the model on one at a time."""

    def __init__(self, model, name: str):
        self.model, self.name = model, name
        self._decoding = threading.BoundedSemaphore(2)
        self._predicting = threading.Lock()

    def read(self, data: bytes) -> dict:
        with self._decoding:
            img = preprocessing.read_image(data)
            x = preprocessing.prepare_digit(img)
        with self._predicting:
            p = self.model.predict(x[None, :, :, None], verbose=0)[0]
        return {
            "digit": int(np.argmax(p)),
            "probabilities": [float(v) for v in p],
            "input": np.round(x.astype(np.float64), 4).tolist(),
        }


class Handler(BaseHTTPRequestHandler):
    server_version = "minicnn"
    timeout = 10  # seconds a client may take to send its request: idle sockets do not pile up
    reader: DigitReader  # set on the subclass made for each server
    files: dict[str, Path]
    quiet = False
    loopback = True  # bound to a loopback address: check the Host header

    # -- answers -------------------------------------------------------------------------------

    def send(self, status: int, body: bytes, content_type: str, extra: dict | None = None):
        self.send_response(status)
        for k, v in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(k, v)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, payload: dict, extra: dict | None = None):
        self.send(status, json.dumps(payload).encode(), "application/json", extra)

    def error(self, status: int, message: str, extra: dict | None = None, close: bool = False):
        if close:  # the body was not read: the connection cannot carry another request
            self.close_connection = True
            extra = {**(extra or {}), "Connection": "close"}
        self.send_json(status, {"error": message, "status": status}, extra)

    def log_message(self, format, *args):  # noqa: A002  (the stdlib's name)
        if not self.quiet:
            super().log_message(format, *args)

    # -- routes --------------------------------------------------------------------------------

    ROUTES = {"/api/predict": ("POST",), "/api/health": ("GET", "HEAD")}

    def route(self):
        """The path if this method may be used on it; else answers 404 or 405 and gives None."""
        path = urlsplit(self.path).path
        allowed = self.ROUTES.get(path) or (("GET", "HEAD") if path in self.files else None)
        if allowed is None:
            self.error(HTTPStatus.NOT_FOUND, f"no such path: {path}", close=True)
            return None
        if self.command not in allowed:
            self.error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{self.command} is not allowed on {path}; use {' or '.join(allowed)}",
                {"Allow": ", ".join(allowed)},
                close=True,
            )
            return None
        return path

    def do_GET(self):  # noqa: N802  (the stdlib's names)
        if not self.known_host():
            return
        path = self.route()
        if path == "/api/health":
            self.send_json(HTTPStatus.OK, {"status": "ok", "model": self.reader.name})
        elif path is not None:
            file = self.files[path]
            self.send(HTTPStatus.OK, file.read_bytes(), STATIC_TYPES[file.suffix])

    do_HEAD = do_GET  # noqa: N815

    def do_other(self):
        """PUT, DELETE, PATCH: 405 on a known path (404 elsewhere), not the stdlib's 501."""
        if self.known_host():
            self.route()

    do_PUT = do_DELETE = do_PATCH = do_other  # noqa: N815

    def do_POST(self):  # noqa: N802
        if not self.known_host() or self.route() is None or not self.same_origin():
            return
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype not in IMAGE_TYPES:
            self.error(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"send the image as {' or '.join(IMAGE_TYPES)}. Received: Content-Type {ctype or 'none'!r}",
                close=True,
            )
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.error(
                HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required", close=True
            )
            return
        if length > MAX_BODY:  # refused from the header: the body is never read
            self.error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the image is {length:,} bytes; at most {MAX_BODY:,} are accepted",
                close=True,
            )
            return
        data = self.rfile.read(length) if length > 0 else b""
        if len(data) != length:
            self.error(HTTPStatus.BAD_REQUEST, "the body is shorter than its Content-Length", close=True)  # fmt: skip
            return
        try:
            answer = self.reader.read(data)
        except preprocessing.NoInkError as e:
            self.error(HTTPStatus.UNPROCESSABLE_ENTITY, f"no ink: {e}")
        except preprocessing.ImageTooLargeError as e:
            self.error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(e))
        except preprocessing.ImageError as e:
            self.error(HTTPStatus.BAD_REQUEST, str(e))
        else:
            self.send_json(HTTPStatus.OK, answer)

    def do_OPTIONS(self):  # noqa: N802  (CORS preflight: never granted)
        self.error(HTTPStatus.METHOD_NOT_ALLOWED, "cross-origin requests are not allowed", close=True)  # fmt: skip

    def known_host(self) -> bool:
        """On a loopback address, only a loopback name may be asked for: a page on another site
        whose name was pointed at 127.0.0.1 (DNS rebinding) sends its own name as Host."""
        if not self.loopback:
            return True
        host = urlsplit(f"//{self.headers.get('Host', '')}").hostname or ""
        if host == "localhost" or _is_loopback(host):
            return True
        self.error(HTTPStatus.FORBIDDEN, f"unknown host {host!r}: use 127.0.0.1", close=True)
        return False

    def same_origin(self) -> bool:
        """A browser names the page's origin on a POST; one from another site is refused, so a
        page elsewhere cannot use this server through its visitor's browser."""
        origin = self.headers.get("Origin")
        if origin is None or urlsplit(origin).netloc == self.headers.get("Host"):
            return True
        self.error(HTTPStatus.FORBIDDEN, f"requests from {origin} are not allowed", close=True)
        return False


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def make_server(model, name: str, host: str = "127.0.0.1", port: int = 8000, quiet=False):
    """A ready ThreadingHTTPServer (bound, not yet serving); port 0 picks a free one."""
    handler = type(
        "DigitHandler",
        (Handler,),
        {
            "reader": DigitReader(model, name),
            "files": static_files(),
            "quiet": quiet,
            "loopback": host == "localhost" or _is_loopback(host),
        },
    )
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True  # Ctrl-C does not wait for a client that keeps a connection open
    return server


def serve(model, name: str, host: str, port: int) -> None:
    """Serve until Ctrl-C or SIGTERM, then close the socket and return."""
    server = make_server(model, name, host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"minicnn serve: reading digits with {name}", flush=True)
    print(f"Open http://{shown}:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
    # Both signals stop it the same way, also when started from a script that ignores SIGINT
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("minicnn serve: stopped", flush=True)
    finally:
        server.server_close()
