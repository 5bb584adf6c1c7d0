"""``minicnn serve``: a local web page to draw a digit on, and the JSON API behind it.

The standard library's HTTP server (minicnn/jsonhttp.py: one thread per connection, at most 64,
every answer JSON with its security headers), and no dependency to install or keep up to date.
Every request is checked before its body is read (host, method, path, origin, content type,
length), images are refused by their bytes and pixel dimensions before they are decoded
(minicnn/imagefile.py), and the model answers one request at a time (numba's thread pool takes
one caller at a time), so its memory is a batch of one whatever the load.

Time limits: a request must arrive within 30 s, each socket read or write within 10 s
(jsonhttp); reading an image and the model's answer take at most ``PREDICT_SECONDS`` (10 s, a
thousand times what a digit needs here), waiting for a free slot included; past it the request
gets a 503 and ``/api/health`` says ``busy`` while the late prediction still runs.

    POST /api/predict   body: PNG or JPEG bytes -> {"digit", "probabilities", "input"}
    GET  /api/health    -> {"status": "ok", "model": ...} (503 "warming" until the model has
                           answered a first, blank digit, right after the server starts)
    GET  /              the page (minicnn/web/: HTML, CSS and JS, no build step, no CDN)

Every error is {"error": message, "status": code}.
"""

from __future__ import annotations

import io
import ipaddress
import queue
import signal
import threading
import time
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from minicnn import preprocessing
from minicnn.jsonhttp import MAX_CONNECTIONS, SECURITY_HEADERS, JSONHandler, JSONServer  # noqa: F401

MAX_BODY = 2 << 20  # bytes: a photo of a digit needs far less
PREDICT_SECONDS = 10
IMAGE_TYPES = ("image/png", "image/jpeg")
WEB = Path(__file__).parent / "web"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}


class BusyError(Exception):
    """The reader did not finish within its time: the model is stuck or overloaded."""


def static_files() -> dict[str, Path]:
    """URL path -> file, for exactly the files shipped in minicnn/web/: a request names one of
    these or gets a 404, so no path (``..``, encoded or not) can reach anything else."""
    files = {f"/{p.name}": p for p in WEB.iterdir() if p.suffix in STATIC_TYPES}
    files["/"] = WEB / "index.html"
    return files


class DigitReader:
    """The model behind the API: decodes two images at a time at most (each bounded by
    preprocessing.MAX_PIXELS) and runs the model on one at a time, each request within
    ``seconds`` (waiting for a slot included). The model is checked when the reader is made."""

    WORKERS = 3  # two decoding, one running the model

    def __init__(self, model, name: str, seconds: float = PREDICT_SECONDS):
        preprocessing.digit_input(model)  # DigitModelError now, not on every request
        self.model, self.name, self.seconds = model, name, seconds
        self._decoding = threading.BoundedSemaphore(2)
        self._predicting = threading.Lock()
        self.running_until: float | None = None  # the time limit of the model call under way
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._starting = threading.Lock()
        self.ready = threading.Event()  # set once the model has answered a first image

    def warm_up(self) -> None:
        """Read one drawn digit the way a request is read (a PNG decoded, prepared, answered),
        so that the first real request finds the decoders and the preparation's code loaded and
        the model's plan made; until then /api/health says "warming". A blank digit alone left
        the first request ~5x slower than the next (PNG decoder, preparation, first uses)."""
        try:
            self._read(_warm_up_png(), time.monotonic() + 60)
        except Exception:  # noqa: BLE001  (a model that fails here fails each request, in JSON)
            pass
        finally:
            self.ready.set()

    def read(self, data: bytes) -> dict:
        """The answer for one image; ImageError, DigitModelError or BusyError otherwise. The
        work runs on the reader's own (daemon) threads, so a model that never returns keeps one
        of those, not the request's: the request gets BusyError when its time is up."""
        if not self._workers:
            with self._starting:  # the first request starts the workers, once
                while len(self._workers) < self.WORKERS:
                    worker = threading.Thread(target=self._work, daemon=True, name="minicnn-read")  # fmt: skip
                    worker.start()
                    self._workers.append(worker)
        deadline = time.monotonic() + self.seconds
        outcome: dict = {}
        done = threading.Event()
        self._jobs.put((data, deadline, outcome, done))
        if not done.wait(max(deadline - time.monotonic(), 0) + 0.05):
            raise BusyError(f"the image was not read within {self.seconds:g} s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["answer"]

    def _work(self):
        while True:
            data, deadline, outcome, done = self._jobs.get()
            try:
                outcome["answer"] = self._read(data, deadline)
            except Exception as e:  # handed to the request's thread
                outcome["error"] = e
            finally:
                done.set()

    def _read(self, data: bytes, deadline: float) -> dict:
        if time.monotonic() >= deadline:  # its request has already been answered
            raise BusyError("too late")
        if not self._decoding.acquire(timeout=max(deadline - time.monotonic(), 0)):
            raise BusyError(f"no slot to read the image came free within {self.seconds:g} s")
        try:
            x = preprocessing.prepare_digit(preprocessing.read_image(data))
        finally:
            self._decoding.release()
        if not self._predicting.acquire(timeout=max(deadline - time.monotonic(), 0)):
            raise BusyError(f"the model was busy with earlier images for {self.seconds:g} s")
        try:
            self.running_until = deadline
            p = preprocessing.predict_digit(self.model, x)
        finally:
            self.running_until = None
            self._predicting.release()
        return {
            "digit": int(np.argmax(p)),
            "probabilities": [float(v) for v in p],
            "input": np.round(x.astype(np.float64), 4).tolist(),
        }

    def stuck_for(self) -> float:
        """Seconds the model call under way has run past its request's time limit (0: none)."""
        until = self.running_until
        return 0.0 if until is None else max(time.monotonic() - until, 0.0)


class Handler(JSONHandler):
    server_version = "minicnn"
    reader: DigitReader  # set on the subclass made for each server
    files: dict[str, Path]
    loopback = True  # bound to a loopback address: check the Host header

    # -- routes --------------------------------------------------------------------------------

    ROUTES = {"/api/predict": ("POST",), "/api/health": ("GET", "HEAD")}

    def route(self):
        """The path if this method may be used on it; else answers 404 or 405 and gives None."""
        try:
            path = urlsplit(self.path).path
        except ValueError:  # "/[x", say: not a path urllib can split
            self.error(HTTPStatus.BAD_REQUEST, f"not a path: {self.path[:200]!r}", close=True)
            return None
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
            late = self.reader.stuck_for()
            if not self.reader.ready.is_set():  # the first answer is still being prepared
                answer = {"status": "warming", "model": self.reader.name}
                self.send_json(HTTPStatus.SERVICE_UNAVAILABLE, answer)
            elif late:  # the model has not answered an image for longer than its time limit
                message = (
                    f"a prediction has run {late:.1f} s past its {self.reader.seconds:g} s limit"
                )
                answer = {"status": "busy", "model": self.reader.name, "error": message}
                self.send_json(HTTPStatus.SERVICE_UNAVAILABLE, answer)
            else:
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
        text = self.headers.get("Content-Length", "").strip()
        if not text.isascii() or not text.isdigit():  # int() would take "-5", "+5" or "٥"
            self.error(
                HTTPStatus.LENGTH_REQUIRED,
                f"a Content-Length header of digits is required. Received: {text[:40]!r}",
                close=True,
            )
            return
        length = int(text)
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
        except preprocessing.DigitModelError as e:  # the model, not the image: the server's fault
            self.error(HTTPStatus.INTERNAL_SERVER_ERROR, f"the model cannot answer: {e}")
        except BusyError as e:
            self.error(HTTPStatus.SERVICE_UNAVAILABLE, f"{e}; try again later", {"Retry-After": "10"})  # fmt: skip
        else:
            self.send_json(HTTPStatus.OK, answer)

    def do_OPTIONS(self):  # noqa: N802  (CORS preflight: never granted)
        self.error(HTTPStatus.METHOD_NOT_ALLOWED, "cross-origin requests are not allowed", close=True)  # fmt: skip

    def known_host(self) -> bool:
        """On a loopback address, only a loopback name may be asked for: a page on another site
        whose name was pointed at 127.0.0.1 (DNS rebinding) sends its own name as Host."""
        if not self.loopback:
            return True
        try:
            host = urlsplit(f"//{self.headers.get('Host', '')}").hostname or ""
        except ValueError:  # "[::1" and the like: not a host name at all
            self.error(HTTPStatus.BAD_REQUEST, "the Host header is not a host name", close=True)
            return False
        if host == "localhost" or _is_loopback(host):
            return True
        self.error(HTTPStatus.FORBIDDEN, f"unknown host {host!r}: use 127.0.0.1", close=True)
        return False

    def same_origin(self) -> bool:
        """A browser names the page's origin on a POST; one from another site is refused, so a
        page elsewhere cannot use this server through its visitor's browser."""
        origin = self.headers.get("Origin")
        try:
            if origin is None or urlsplit(origin).netloc == self.headers.get("Host"):
                return True
        except ValueError:  # not a URL: no page's origin either
            pass
        self.error(HTTPStatus.FORBIDDEN, f"requests from {origin} are not allowed", close=True)
        return False


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _warm_up_png() -> bytes:
    """A "1" drawn in dark ink on light paper, as a PNG: what the page sends."""
    from PIL import Image

    img = np.full((120, 120), 235, np.uint8)
    img[20:100, 55:66] = 30
    out = io.BytesIO()
    Image.fromarray(img).save(out, format="PNG")
    return out.getvalue()


def make_server(model, name: str, host: str = "127.0.0.1", port: int = 8000, quiet=False, warm=True, **limits):  # fmt: skip
    """A server (bound, not yet serving); port 0 picks a free one. A model whose input is not a
    prepared digit's raises DigitModelError here. ``warm``: answer a blank digit on a thread
    of its own first (``server.ready`` is set when it has; health says "warming" till then).
    ``limits``, to test them small:
    ``predict_seconds``, ``max_connections``, and the handler's ``request_seconds`` and
    ``timeout`` (a socket's)."""
    reader = DigitReader(model, name, limits.pop("predict_seconds", PREDICT_SECONDS))
    connections = limits.pop("max_connections", MAX_CONNECTIONS)
    if set(limits) - {"request_seconds", "timeout"}:
        raise TypeError(f"unknown limits: {sorted(set(limits) - {'request_seconds', 'timeout'})}")
    handler = type(
        "DigitHandler",
        (Handler,),
        {
            "reader": reader,
            "files": static_files(),
            "quiet": quiet,
            "loopback": host == "localhost" or _is_loopback(host),
            **limits,
        },
    )
    server = JSONServer((host, port), handler, quiet=quiet, max_connections=connections)
    server.ready = reader.ready  # set once the warm-up below has answered
    if warm:
        threading.Thread(target=reader.warm_up, daemon=True, name="minicnn-warm-up").start()
    else:
        reader.ready.set()
    return server


def _announce(server, shown: str) -> None:
    """Print the address once the model is warm (health says "warming" until then)."""
    server.ready.wait()
    print(f"Open http://{shown}:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)


def serve(model, name: str, host: str, port: int) -> None:
    """Serve until Ctrl-C or SIGTERM, then close the socket and return."""
    server = make_server(model, name, host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"minicnn serve: reading digits with {name}", flush=True)
    threading.Thread(target=_announce, args=(server, shown), daemon=True).start()
    # Both signals stop it the same way, also when started from a script that ignores SIGINT
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("minicnn serve: stopped", flush=True)
    finally:
        server.server_close()
