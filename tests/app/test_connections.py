"""HTTP connection limits on a real `mnist-lab serve` (app/connections.py, app/middleware.py):
a huge head is refused without the server holding it, slow heads and bodies and idle
connections are closed, and one connection over the limit is turned away at once.

Raw sockets, because an HTTP client library will not send a broken request. Every wait is for a
condition (the server's answer or its closing the socket), bounded by a socket timeout far above
the server's limits."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from tests.app.liveserver import LiveServer

pytestmark = pytest.mark.mnist

MB = 1 << 20
PATIENCE = 60.0  # seconds a test waits for the server to act on a limit of 1 s


@pytest.fixture(scope="module")
def server(tmp_path_factory, mnist_dir):
    env = {"MNIST_DIR": str(mnist_dir), "MNIST_LAB_HEADER_TIMEOUT_S": "1",
           "MNIST_LAB_BODY_TIMEOUT_S": "1", "MNIST_LAB_KEEP_ALIVE_TIMEOUT_S": "1"}
    with LiveServer(tmp_path_factory.mktemp("connections") / "data", env=env) as live:
        yield live


def connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def test_a_huge_header_is_refused_without_the_server_holding_it(server):
    at_rest = server.peak_rss_bytes()
    sock = connect(server)
    sent = 0
    total = 64 * MB
    chunk = b"a" * MB
    with sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
        try:
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_until_closed(sock)
    assert sent < total, "the server read a 64 MB header to the end"
    if answer:  # the answer may be lost to the reset of a connection that was still sending
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"MNIST_LAB_MAX_HEADER_BYTES" in answer
    grown = server.peak_rss_bytes() - at_rest
    assert grown < 16 * MB, f"the server grew by {grown / MB:.0f} MB"
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_whole_requests_larger_than_the_head_limit_in_one_write_are_answered(server):
    """A short head with a 100 KB body, written at once, again and again on one kept-alive
    connection: only heads count against the head limit, whatever else a read carries."""
    body = b'{"pixels": [' + b"0.0000," * 14_000 + b'0]}'
    request = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    with connect(server) as sock:
        for _ in range(5):
            sock.sendall(request)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(65536)
            head, _, rest = answer.partition(b"\r\n\r\n")
            assert head.startswith((b"HTTP/1.1 409 ", b"HTTP/1.1 422 ")), head  # read, not 431
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(rest) < length:
                rest += sock.recv(65536)


def test_a_request_head_that_never_ends_is_answered_408_and_closed(server):
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"MNIST_LAB_HEADER_TIMEOUT_S" in answer


def trickled(server: LiveServer, first: bytes, every_tenth_of_a_second: bytes) -> bytes:
    """Send `first`, then the same few bytes every 0.1 s until the server closes the
    connection; what it answered."""
    stop = threading.Event()

    def trickle(sock: socket.socket) -> None:
        try:
            sock.sendall(first)
            while not stop.wait(0.1):
                sock.sendall(every_tenth_of_a_second)
        except OSError:
            pass

    with connect(server) as sock:
        sender = threading.Thread(target=trickle, args=(sock,), daemon=True)
        sender.start()
        answer = read_until_closed(sock)
        stop.set()
        sender.join(10)
    return answer


def test_a_trickling_head_is_cut_off_however_busy_it_keeps_the_connection(server):
    """Slowloris: a header line every 0.1 s keeps the connection busy; the head never ends."""
    answer = trickled(server, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-a: b\r\n")
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_a_connection_that_sends_nothing_is_closed(server):
    with connect(server) as sock:
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_an_idle_kept_alive_connection_is_closed(server):
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = read_until_closed(sock)  # the answer, then nothing until the server closes
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"status":"ok"' in answer


def test_a_body_that_never_arrives_is_answered_408_and_closed(server):
    with connect(server) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 5000\r\n\r\n{\"pixels\": [0.0, ")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"MNIST_LAB_BODY_TIMEOUT_S" in answer


def test_a_trickling_chunked_body_is_cut_off(server):
    answer = trickled(server, b"POST /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n", b"1\r\n \r\n")
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_an_oversized_chunked_body_is_413_not_400(server):
    """No Content-Length to check up front: the bytes are counted as they arrive."""
    def chunks():
        for _ in range(5):
            yield b"[" + b"0," * (512 * 1024) + b"0]"

    answer = httpx.post(f"{server.url}/api/runs", content=chunks(),
                        headers={"Content-Type": "application/json"}, timeout=PATIENCE)
    assert answer.status_code == 413, answer.text
    assert "MNIST_LAB_MAX_BODY_BYTES" in answer.json()["detail"]


def test_one_connection_over_the_limit_is_turned_away_at_once(tmp_path, mnist_dir):
    env = {"MNIST_DIR": str(mnist_dir), "MNIST_LAB_MAX_CONNECTIONS": "6",
           "MNIST_LAB_MAX_STREAM_CLIENTS": "2", "MNIST_LAB_HEADER_TIMEOUT_S": str(PATIENCE * 2)}
    with LiveServer(tmp_path / "data", env=env) as server:
        held = [connect(server) for _ in range(6)]
        try:
            # The server counts a connection when it accepts it: wait until all six are counted,
            # then the seventh is answered 503 before it sends anything.
            with connect(server) as extra:
                answer = read_until_closed(extra)
            assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
            assert b"MNIST_LAB_MAX_CONNECTIONS" in answer
        finally:
            for sock in held:
                sock.close()
        # Closed connections free their places.
        def healthy():
            try:
                return httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False
        from tests.app.liveserver import wait_for
        wait_for(healthy, PATIENCE, 0.2, "a free connection")
