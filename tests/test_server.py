"""``minicnn serve``'s API: answers, every kind of bad input, concurrency, and stopping."""

import http.client
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from minicnn import load_model
from minicnn.cli import main as cli_main
from minicnn.preprocessing import load_image, prepare_digit
from minicnn.server import MAX_BODY, make_server


def png(img: Image.Image, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def drawn_seven() -> Image.Image:
    img = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(img).line([(80, 60), (200, 60), (120, 230)], fill=0, width=18)
    return img


def bomb_png(width=30_000, height=30_000) -> bytes:
    """A PNG whose header claims width x height pixels, followed by a few bytes of data:
    decoding it would need ~900 MB; its header alone must be enough to refuse it."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    data = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def model_path(seed_model_file):
    return seed_model_file


@pytest.fixture(scope="module")
def server(model_path):
    srv = make_server(load_model(model_path), "test-model", port=0, quiet=True)
    assert srv.ready.wait(60)  # warmed up: health says "ok" from here
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def request(server, method, path, body=None, headers=None):
    """(status, headers, JSON or raw body) of one request."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        raw = r.read()
        is_json = r.getheader("Content-Type") == "application/json"
        return r.status, dict(r.getheaders()), json.loads(raw) if is_json else raw
    finally:
        conn.close()


def predict(server, data, ctype="image/png", headers=None):
    return request(server, "POST", "/api/predict", data, {"Content-Type": ctype, **(headers or {})})


def test_health(server):
    status, headers, answer = request(server, "GET", "/api/health")
    assert status == 200 and answer == {"status": "ok", "model": "test-model"}
    assert "Access-Control-Allow-Origin" not in headers


def test_predict_answers_as_the_command_line_does(server, model_path, tmp_path, capsys):
    path = tmp_path / "seven.png"
    drawn_seven().save(path)
    status, _, answer = predict(server, path.read_bytes())
    assert status == 200 and set(answer) == {"digit", "probabilities", "input"}
    p, x = np.array(answer["probabilities"]), np.array(answer["input"])
    assert p.shape == (10,) and abs(p.sum() - 1) < 1e-5 and answer["digit"] == int(p.argmax())
    assert x.shape == (28, 28) and x.min() >= 0 and x.max() <= 1
    # the same preparation and the same model as `minicnn predict`
    expected_x = prepare_digit(load_image(path))
    np.testing.assert_allclose(x, expected_x, atol=1e-4)
    expected_p = load_model(model_path).predict(expected_x[None, :, :, None], verbose=0)[0]
    np.testing.assert_allclose(p, expected_p, rtol=1e-5, atol=1e-7)
    assert cli_main(["predict", str(path), "--model", str(model_path)]) == 0
    line = capsys.readouterr().out
    digit, top = re.match(r".*: (\d)   \((.*)\)", line).groups()
    assert int(digit) == answer["digit"]
    for k, pct in re.findall(r"(\d): ([\d.]+)%", top):
        assert abs(float(pct) - 100 * p[int(k)]) <= 0.05 + 1e-9


def test_jpeg_photo(server):
    rgb = drawn_seven().convert("RGB")
    status, _, answer = predict(server, png(rgb, "JPEG"), "image/jpeg")
    assert status == 200 and len(answer["probabilities"]) == 10


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (280, 280), 255),
        Image.new("RGB", (50, 40), (30, 90, 200)),
        Image.new("RGBA", (64, 64)),
    ],  # fmt: skip
    ids=["blank", "flat colour", "transparent"],
)
def test_no_ink_is_422(server, image):
    status, _, answer = predict(server, png(image))
    assert status == 422 and "no ink" in answer["error"] and answer["status"] == 422


@pytest.mark.parametrize(
    "body,expected",
    [
        (b"", "is empty; only PNG and JPEG images are read"),
        (b"hello, not an image", "is not an image; only PNG and JPEG images are read"),
        (png(drawn_seven())[:300], "a damaged PNG image"),
        (png(drawn_seven(), "GIF"), "is a GIF image; only PNG and JPEG images are read"),
    ],
    ids=["empty", "text", "truncated", "GIF labelled PNG"],
)
def test_not_an_image_is_400(server, body, expected):
    status, _, answer = predict(server, body)
    assert status == 400 and expected in answer["error"]


def test_oversized_body_is_refused_before_it_is_read(server):
    """Only the headers are sent: the answer comes without waiting for the 3 MB body."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5) as s:
        s.sendall(
            b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1)
        )
        reply = b""
        while chunk := s.recv(65536):  # headers and body may come in separate segments
            reply += chunk
    reply = reply.decode()
    assert reply.startswith("HTTP/1.0 413") and "at most 2,097,152" in reply


def test_decompression_bomb_is_refused(server):
    """Refused from the header before Pillow opens it: a 30000x30000 claim and a 5000x5000 one
    (decoding either would take ~25-900 MB)."""
    status, _, answer = predict(server, bomb_png())
    assert status == 413 and "30000x30000 pixels; at most 12,000,000" in answer["error"]
    status, _, answer = predict(server, bomb_png(5000, 5000))  # under Pillow's own limit
    assert status == 413 and "5000x5000 pixels" in answer["error"]
    status, _, _ = predict(server, bomb_png(3000, 3000))  # under the limit: decoded and read
    assert status in (400, 422)  # its data is cut short (400) or it is blank (422)


def test_wrong_method_is_405(server):
    status, headers, answer = request(server, "GET", "/api/predict")
    assert status == 405 and headers["Allow"] == "POST" and "use POST" in answer["error"]
    for method in ("PUT", "DELETE", "PATCH"):
        status, headers, _ = request(server, method, "/api/health")
        assert status == 405 and headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/api/predicts",
        "/../pyproject.toml",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fsetup.py",
        "/web/app.js",
        "/server.py",
        "/%2fetc%2fpasswd",
    ],  # fmt: skip
)
def test_unknown_paths_are_404_and_nothing_escapes(server, path):
    status, _, answer = request(server, "GET", path)
    assert status == 404 and answer["error"].startswith("no such path")


def test_static_page_and_assets(server):
    status, headers, page = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"<canvas" in page and b"//" not in page.replace(b"http://www.w3.org", b"")  # no CDN
    for asset, kind in (("/app.js", "text/javascript"), ("/style.css", "text/css")):
        status, headers, _ = request(server, "GET", asset)
        assert status == 200 and headers["Content-Type"] == kind
        assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("ctype", ["text/plain", "application/octet-stream", "image/gif", ""])
def test_wrong_content_type_is_415(server, ctype):
    status, _, answer = predict(server, png(drawn_seven()), ctype)
    assert status == 415 and "image/png or image/jpeg" in answer["error"]


def test_other_sites_cannot_use_it(server):
    good = png(drawn_seven())
    status, headers, _ = request(server, "OPTIONS", "/api/predict", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})  # fmt: skip
    assert status == 405 and "Access-Control-Allow-Origin" not in headers
    status, _, answer = predict(server, good, headers={"Origin": "https://evil.example"})
    assert status == 403 and "evil.example" in answer["error"]
    # DNS rebinding: another name pointed at 127.0.0.1 sends itself as Host
    status, _, _ = predict(server, good, headers={"Host": "evil.example:80"})
    assert status == 403
    port = server.server_address[1]
    status, headers, _ = predict(server, good, headers={"Origin": f"http://127.0.0.1:{port}"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers


def test_bad_requests_change_nothing(server):
    model = server.RequestHandlerClass.reader.model
    before = [w.copy() for w in model.get_weights()]
    good = png(drawn_seven())
    first = predict(server, good)[2]
    for body, ctype in ((b"x", "image/png"), (bomb_png(), "image/png"), (good, "text/plain")):
        predict(server, body, ctype)
    assert predict(server, good)[2] == first
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def _load(server, body, clients: int, each: int, expected):
    """``clients`` threads sending ``each`` requests one after another: (latencies, failures)."""
    latencies, failures = [], []

    def client():
        for _ in range(each):
            start = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
                conn.request("POST", "/api/predict", body, {"Content-Type": "image/png"})
                r = conn.getresponse()
                answer = json.loads(r.read())
                conn.close()
                if r.status != 200 or answer["digit"] != expected:
                    failures.append((r.status, answer))
            except OSError as e:
                failures.append(repr(e))
            latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, failures


def test_eight_clients_two_hundred_requests_each(server, capsys):
    """1,600 requests from 8 threads at once: every one answered 200 with the same digit, and
    the process's memory does not grow with the count (measured after a warm-up round, which
    sets up the allocator's per-thread arenas). Prints p50/p99 latency."""
    body = png(drawn_seven())
    expected = predict(server, body)[2]["digit"]
    _load(server, body, 8, 25, expected)
    rss = _rss_mib()
    start = time.perf_counter()
    latencies, failures = _load(server, body, 8, 200, expected)
    wall = time.perf_counter() - start
    assert not failures, failures[:3]
    assert len(latencies) == 1600
    grown = _rss_mib() - rss
    assert grown < 32, f"RSS grew by {grown:.0f} MiB over 1,600 requests"
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    with capsys.disabled():
        print(
            f"\nserve: 8 clients x 200 requests in {wall:.1f} s ({1600 / wall:.0f} req/s), "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, RSS +{grown:.1f} MiB"
        )


def _start(args, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "minicnn.cli", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env=env,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_it_cleanly(model_path, tmp_path, sig):
    proc = _start(["--model", str(model_path)], tmp_path)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        port = int(re.search(r"http://127.0.0.1:(\d+)/", lines[1]).group(1))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/health")
        assert json.loads(conn.getresponse().read())["status"] == "ok"
        conn.close()
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "minicnn serve: stopped" in out and "Traceback" not in out


def test_serve_without_a_model_says_how_to_train_one(tmp_path, monkeypatch):
    monkeypatch.delenv("MINICNN_MODEL", raising=False)
    proc = _start([], tmp_path)  # tmp_path has no runs/ folder
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "no model at runs/mnist/model.minicnn: train one first with `minicnn train`" in out


def test_busy_port_is_one_line(model_path, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        proc = _start(["--model", str(model_path), "--port", str(s.getsockname()[1])], tmp_path)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "cannot listen on 127.0.0.1" in out and "Traceback" not in out


def test_default_model_prefers_the_best_recipe(tmp_path, monkeypatch):
    from minicnn.cli import default_model

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINICNN_MODEL", raising=False)
    assert str(default_model()) == "runs/mnist/model.minicnn"
    (tmp_path / "runs/mnist_best").mkdir(parents=True)
    (tmp_path / "runs/mnist_best/model.minicnn").write_bytes(b"")
    assert str(default_model()) == "runs/mnist_best/model.minicnn"
    monkeypatch.setenv("MINICNN_MODEL", "elsewhere.minicnn")
    assert str(default_model()) == "elsewhere.minicnn"


def test_health_says_warming_until_the_model_has_answered(model_path, monkeypatch):
    """The server warms the model up before it reports ready: health is 503 "warming" until a
    first drawn digit has been read as a request is (a PNG decoded, prepared, answered), then
    "ok", and the first real answer needs no plan."""
    import threading

    from minicnn import load_model

    model = load_model(model_path)
    gate = threading.Event()
    real = model.predict

    def held(x, **kwargs):
        gate.wait(30)
        return real(x, **kwargs)

    model.predict = held
    import minicnn.preprocessing as prep

    read, decoded = prep.read_image, []
    prep_read = lambda data: decoded.append(data[:8]) or read(data)  # noqa: E731
    monkeypatch.setattr(prep, "read_image", prep_read)
    srv = make_server(model, "warming-model", port=0, quiet=True)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        status, answer = _get(srv, "/api/health")
        assert status == 503 and answer == {"status": "warming", "model": "warming-model"}
        gate.set()
        assert srv.ready.wait(30)
        status, answer = _get(srv, "/api/health")
        assert status == 200 and answer["status"] == "ok"
        assert len(model._plans) == 1  # the warm-up's plan, for one image
        assert decoded == [b"\x89PNG\r\n\x1a\n"]  # through the PNG decoder, as a request
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)


def _get(srv, path):
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=30)
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, json.loads(response.read())
