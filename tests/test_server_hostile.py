"""``minicnn serve`` against malformed, slow and hostile clients, and models that cannot answer:
every request gets a JSON answer with the security headers, within the time limits, and the
server stays healthy. Loopback only; every loop is bounded in count, and no assert is on time."""

import http.client
import io
import json
import random
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image, ImageDraw

from minicnn import Sequential, load_model
from minicnn.jsonhttp import SECURITY_HEADERS
from minicnn.layers import Conv2D, Dense, Flatten
from minicnn.preprocessing import DigitModelError
from minicnn.server import make_server


def png_seven() -> bytes:
    img = Image.new("L", (140, 140), 255)
    ImageDraw.Draw(img).line([(40, 30), (100, 30), (60, 115)], fill=0, width=10)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


SEVEN = png_seven()


class Running:
    """A server on a free loopback port, served on a thread until the block ends."""

    def __init__(self, model, **limits):
        warm = not isinstance(model, FakeModel)  # a fake's answers are the test's, not a warm-up's
        self.srv = make_server(model, "test-model", port=0, quiet=True, warm=warm, **limits)
        self.srv.ready.wait(60)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.05})  # fmt: skip

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join(10)


def raw(port, data: bytes, then_close_write=False, timeout=30) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if then_close_write:
            s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply


def parse(reply: bytes):
    """(status, headers, JSON body) of a raw HTTP/1.x reply, asserting it is JSON with the
    security headers and that its body says the same status."""
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1."), reply[:200]
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Content-Type"] == "application/json", headers
    for k, v in SECURITY_HEADERS.items():
        assert headers[k] == v
    answer = json.loads(body)
    if status != 200:
        assert answer["status"] == status and answer["error"], answer
    return status, headers, answer


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def model(seed_model_file):
    return load_model(seed_model_file)


@pytest.fixture(scope="module")
def server(model):
    with Running(model, request_seconds=1.0) as running:
        yield running


def post(body: bytes, ctype="image/png", extra=b"") -> bytes:
    return (
        b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\n"
        b"Content-Length: %d\r\n%s\r\n" % (ctype.encode(), len(body), extra) + body
    )


MALFORMED = {
    "garbage request line": (b"GARBAGE\r\n\r\n", 400),
    "four words": (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
    "bad version": (b"GET / HTTP/x.y\r\n\r\n", 400),
    "HTTP/2": (b"GET / HTTP/2.0\r\n\r\n", 505),
    "HTTP/0.9": (b"GET /\r\n", 400),
    "request line too long": (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
    "header too long": (b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    "too many headers": (b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 120 + b"\r\n", 431),
    "unknown method": (b"BREW /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 501),
    "Host [::1": (b"GET /api/health HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    "Origin [x": (post(SEVEN, extra=b"Origin: http://[x\r\n"), 403),
    "absolute URL path": (b"GET http://[x/api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
    "negative length": (post(b"", extra=b"").replace(b"Length: 0", b"Length: -5"), 411),
    "non-ASCII length": (post(b"").replace(b"Length: 0", "Length: \u0665".encode()), 411),
    "ICO labelled PNG": (post(b"\x00\x00\x01\x00" + b"\x00" * 40), 400),
    "body shorter than its length": (post(SEVEN)[:-100], 400),  # then the write side closes
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_requests_get_json_errors_with_security_headers(server, case):
    """The stdlib answered these with HTML and no security headers (or, for a Host of
    "[::1", with nothing and a traceback in the log)."""
    data, expected = MALFORMED[case]
    status, _, answer = parse(raw(server.port, data, then_close_write=True))
    assert status == expected, answer


def test_slow_clients_get_a_408_in_json(server):
    """request_seconds=1 here: a request line that stops half-way, headers that never end and a
    body that never comes each get a 408 once the request's time is up."""
    for partial in (
        b"GET /api/hea",
        b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        post(SEVEN)[: len(post(SEVEN)) - 500],
    ):
        status, _, answer = parse(raw(server.port, partial))
        assert status == 408 and "within 1.0 s" in answer["error"]


def test_a_client_dribbling_bytes_cannot_stretch_the_request(server):
    """One byte at a time, each well within the socket timeout: the request's own deadline
    still ends it (the stdlib only bounded each read, so this could go on for ever)."""
    data = post(SEVEN)
    reply = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        for i in range(len(data)):  # bounded: the server answers long before the end
            try:
                s.sendall(data[i : i + 1])
            except OSError:  # it closed the connection after answering
                break
            try:
                if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                    break  # its answer has come
            except BlockingIOError:
                pass
            threading.Event().wait(0.01)
        while chunk := s.recv(65536):
            reply += chunk
    status, _, _ = parse(reply)
    assert status == 408


def test_connections_beyond_the_limit_get_a_503_at_once(model):
    with Running(model, max_connections=2, request_seconds=2.0) as running:
        idle = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(2)]
        try:
            status, headers, answer = parse(raw(running.port, b""))
            assert status == 503 and "too many connections" in answer["error"]
        finally:
            for s in idle:
                s.close()
        status, answer = 0, None
        for _ in range(50):  # the idle ones' slots come free as the server sees them close
            status, answer = request(running.port, "GET", "/api/health")
            if status == 200:
                break
            threading.Event().wait(0.1)
        assert status == 200 and answer["status"] == "ok"


class FakeModel:
    """A model with the digit's input whose predict does what the test says."""

    input_shape = (None, 28, 28, 1)  # as Keras gives it

    def __init__(self, answer):
        self.answer = answer

    def predict(self, x, verbose=0):
        return self.answer(x)


def test_a_model_that_never_answers_gets_503_and_health_says_busy():
    release = threading.Event()

    def stuck(x):
        release.wait(60)
        return np.full((1, 10), 0.1)

    with Running(FakeModel(stuck), predict_seconds=0.3) as running:
        try:
            status, answer = request(running.port, "POST", "/api/predict", SEVEN, {"Content-Type": "image/png"})  # fmt: skip
            assert status == 503 and "not read within 0.3 s" in answer["error"]
            status, answer = request(running.port, "GET", "/api/health")
            assert status == 503 and answer["status"] == "busy"
            # the next image waits for the model only as long as its own limit
            status, answer = request(running.port, "POST", "/api/predict", SEVEN, {"Content-Type": "image/png"})  # fmt: skip
            assert status == 503
        finally:
            release.set()
        for _ in range(50):  # the stuck call returns once released
            status, answer = request(running.port, "GET", "/api/health")
            if status == 200:
                break
            threading.Event().wait(0.1)
        assert answer == {"status": "ok", "model": "test-model"}
        status, answer = request(running.port, "POST", "/api/predict", SEVEN, {"Content-Type": "image/png"})  # fmt: skip
        assert status == 200 and len(answer["probabilities"]) == 10


@pytest.mark.parametrize(
    "answer,expected",
    [
        (lambda x: np.full((1, 10), np.nan), "NaN or infinity"),
        (lambda x: np.zeros((1, 4, 4)), "shape (4, 4)"),
        (lambda x: 1 / 0, "internal error (ZeroDivisionError)"),
    ],
    ids=["NaN", "not a vector", "raises"],
)
def test_a_model_that_cannot_answer_gets_a_json_500(answer, expected):
    """Bare NaN tokens are not JSON; an exception used to drop the connection with no reply."""
    with Running(FakeModel(answer)) as running:
        reply = raw(running.port, post(SEVEN), then_close_write=True)
        status, _, body = parse(reply)
        assert status == 500 and expected in body["error"]
        assert request(running.port, "GET", "/api/health")[0] == 200


def other_shape_model(path):
    model = Sequential([Conv2D(2, 3, input_shape=(32, 32, 3)), Flatten(), Dense(10, activation="softmax")])  # fmt: skip
    model.compile("adam", "categorical_crossentropy")
    model.save(path)
    return path


def test_a_model_for_other_inputs_is_refused_when_the_server_starts(tmp_path):
    """Issue 25, defect 4: a valid 32x32x3 model made `serve` drop every POST with no reply."""
    path = other_shape_model(tmp_path / "rgb.minicnn")
    with pytest.raises(DigitModelError, match=r"\(32, 32, 3\).*\(28, 28, 1\)"):
        make_server(load_model(path), "rgb", port=0)
    done = subprocess.run(
        [sys.executable, "-m", "minicnn.cli", "serve", "--port", "0", "--model", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "(32, 32, 3)" in done.stderr and "Traceback" not in done.stderr


# -- the soak ------------------------------------------------------------------------------------

SOAK_KINDS = [
    ("good", lambda: post(SEVEN), 200),
    ("garbage", lambda: b"\x01" + random.randbytes(64).translate(None, b"\r\n") + b"\r\n\r\n", 400),
    ("HTTP/0.9", lambda: b"GET /\r\n", 400),
    ("long line", lambda: b"GET /" + b"x" * 66_000 + b" HTTP/1.1\r\n\r\n", 414),
    ("many headers", lambda: b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 101 + b"\r\n", 431),
    ("bad host", lambda: b"GET /api/health HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    ("other host", lambda: b"GET /api/health HTTP/1.1\r\nHost: evil.example\r\n\r\n", 403),
    ("not an image", lambda: post(b"hello"), 400),
    ("text/plain", lambda: post(SEVEN, "text/plain"), 415),
    ("huge length", lambda: post(b"").replace(b"Length: 0", b"Length: 99999999"), 413),
    ("slow", lambda: post(SEVEN)[:200], 408),
    ("unknown path", lambda: b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 404),
]


def test_soak_with_slow_and_malformed_clients(server):
    """240 connections from 8 threads, a seeded mix of good, malformed and slow requests (the
    server's request limit is 1 s here): every one gets a JSON answer with the expected status
    and the security headers, and afterwards health is ok and a drawing reads as before."""
    expected_digit = request(server.port, "POST", "/api/predict", SEVEN, {"Content-Type": "image/png"})[1]["digit"]  # fmt: skip
    results, problems = [], []

    def client(seed):
        rnd = random.Random(seed)
        for _ in range(30):
            name, make, status = rnd.choice(SOAK_KINDS)
            try:
                got, _, answer = parse(raw(server.port, make(), then_close_write=name != "slow"))
                results.append(name)
                if got != status or (name == "good" and answer["digit"] != expected_digit):
                    problems.append((name, got, answer))
            except (OSError, AssertionError, ValueError) as e:
                problems.append((name, repr(e)))

    random.seed(0)
    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not problems, problems[:5]
    assert len(results) == 240 and {"good", "slow", "garbage"} <= set(results)
    assert request(server.port, "GET", "/api/health") == (200, {"status": "ok", "model": "test-model"})  # fmt: skip
    status, answer = request(server.port, "POST", "/api/predict", SEVEN, {"Content-Type": "image/png"})  # fmt: skip
    assert status == 200 and answer["digit"] == expected_digit
