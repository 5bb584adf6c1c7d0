"""An HTTP server that answers every request in JSON, with its security headers, within limits.

The standard library's ``BaseHTTPRequestHandler`` answers malformed requests (a bad request
line, HTTP/0.9, lines or headers too long) with HTML and no security headers, drops a request
whose handler raises, and lets a slow client hold a thread for as long as it sends a byte now
and then. Here:

- every error, the stdlib's own included (``send_error``), is ``{"error": ..., "status": ...}``
  with ``SECURITY_HEADERS``, and the connection closes after it;
- an exception in a handler is a 500 in JSON, logged in one line (no traceback to the client);
- HTTP/0.9 (a request line without a version), which can carry no status line or headers, is
  refused with a 400 sent as HTTP/1.0;
- time: each read or write on a socket waits at most ``SOCKET_SECONDS`` (10 s), and a request's
  line, headers and body must all arrive within ``REQUEST_SECONDS`` (30 s: 2 MB at 70 kB/s)
  of the connection waiting for it, else a 408; an idle keep-alive connection is closed then;
- at most ``MAX_CONNECTIONS`` (64) connections are served at once; one more gets a 503 at once.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SOCKET_SECONDS = 10
REQUEST_SECONDS = 30
MAX_CONNECTIONS = 64
MAX_LINE = 65536  # the stdlib's limit for the request line and each header line
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _DeadlineReader(io.RawIOBase):
    """The socket's bytes, each read waiting at most until the handler's deadline (and at most
    SOCKET_SECONDS): a client sending one byte a second cannot stretch a request for ever."""

    def __init__(self, sock: socket.socket, handler: JSONHandler):
        self.sock, self.handler = sock, handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.handler.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request's time is up")
        self.sock.settimeout(min(left, self.handler.timeout))
        return self.sock.recv_into(buffer)


class JSONHandler(BaseHTTPRequestHandler):
    """Subclass with ``do_GET`` and the like, answering with ``send_json`` or ``error``."""

    timeout = SOCKET_SECONDS
    request_seconds = REQUEST_SECONDS
    default_request_version = "HTTP/1.0"  # errors before the version is read get a status line
    quiet = False

    # -- answers -------------------------------------------------------------------------------

    def send(self, status: int, body: bytes, content_type: str, extra: dict | None = None):
        self.connection.settimeout(self.timeout)  # a slow reader: SOCKET_SECONDS per write
        self.answered = True  # from here on, a failure cannot be answered on this connection
        self.send_response(status)
        for k, v in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(k, v)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, payload: dict, extra: dict | None = None):
        # allow_nan=False: bare NaN is not JSON; a payload holding one is a bug, answered 500
        self.send(status, json.dumps(payload, allow_nan=False).encode(), "application/json", extra)

    def error(self, status: int, message: str, extra: dict | None = None, close: bool = False):
        if close:  # the body was not read: the connection cannot carry another request
            self.close_connection = True
            extra = {**(extra or {}), "Connection": "close"}
        self.send_json(status, {"error": message, "status": int(status)}, extra)

    def send_error(self, code, message=None, explain=None):
        """The stdlib's errors (bad request line, header too long, unsupported method) in JSON."""
        text = message or HTTPStatus(code).phrase
        self.log_message("%d %s", int(code), text)
        self.error(code, f"{text}: {explain}" if explain else text, close=True)

    def log_message(self, format, *args):  # noqa: A002  (the stdlib's name)
        if not self.quiet:
            super().log_message(format, *args)

    # -- one request ---------------------------------------------------------------------------

    def setup(self):
        super().setup()
        self.deadline = time.monotonic() + self.request_seconds
        self.rfile.close()  # the stdlib's reader: replaced by one that keeps to the deadline
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self))

    def parse_request(self) -> bool:
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        if (
            len(self.requestline.split()) == 2
        ):  # "GET /": HTTP/0.9, no version (split as the stdlib does)
            self.send_error(HTTPStatus.BAD_REQUEST, "HTTP/0.9 requests are not served; use HTTP/1.1")  # fmt: skip
            return False
        return super().parse_request()

    def handle_one_request(self):
        """The stdlib's loop step, with a JSON answer for each way it can end badly."""
        self.deadline = time.monotonic() + self.request_seconds
        self.answered = False
        self.command, self.request_version = "", self.default_request_version
        self.requestline, self.raw_requestline = "", b""  # what the log names, until they come
        try:
            self.raw_requestline = self.rfile.readline(MAX_LINE + 1)
            if len(self.raw_requestline) > MAX_LINE:
                self.requestline = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, f"the request line is longer than {MAX_LINE:,} bytes")  # fmt: skip
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():  # it answered
                return
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"{self.command} is not served")
                return
            method()
            self.wfile.flush()
        except TimeoutError:  # the socket's wait or the request's deadline: whichever came first
            late = time.monotonic() >= self.deadline - 0.01
            why = f"did not arrive within {self.request_seconds} s" if late else f"stalled for {self.timeout} s"  # fmt: skip
            self._last_word(HTTPStatus.REQUEST_TIMEOUT, f"the request {why}")
        except ConnectionError:
            self.close_connection = True  # the client went away: nobody to answer
        except Exception as e:  # a bug: the client gets a 500, the log one line
            self.log_error("internal error: %s: %s", type(e).__name__, e)
            self._last_word(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error ({type(e).__name__})")  # fmt: skip

    def _last_word(self, status: int, message: str):
        self.close_connection = True
        if self.answered:  # part of an answer went out: nothing more can be said
            return
        try:
            self.error(status, message, close=True)
            self.wfile.flush()
        except OSError:
            pass


class JSONServer(ThreadingHTTPServer):
    """A thread per connection, at most MAX_CONNECTIONS at once, the next refused with a 503."""

    daemon_threads = True  # Ctrl-C does not wait for a client that keeps a connection open

    def __init__(self, address, handler, quiet: bool = False, max_connections=MAX_CONNECTIONS):
        self.quiet = quiet
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            body = json.dumps({"error": "too many connections; try again", "status": 503})
            head = "".join(f"{k}: {v}\r\n" for k, v in SECURITY_HEADERS.items())
            reply = (
                f"HTTP/1.0 503 Service Unavailable\r\n{head}Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
            )
            try:
                request.settimeout(1)
                request.sendall(reply.encode())
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # no thread could start, so none will release the slot
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address):
        """One line, not the stdlib's traceback: the handler already answered what it could."""
        if not self.quiet:
            e = sys.exc_info()[1]
            print(f"{client_address[0]}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
