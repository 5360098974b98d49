"""Cross-site websockets and DNS rebinding (issue 10 item 10): a real front refuses, with 403 and a
log line, a browser page of a foreign origin and a Host name it does not serve; non-browser
clients, its own viewer page and loopback pages pass."""

from __future__ import annotations

import base64
import json
import os
import socket
import time

import pytest

WAIT = 30.0


def request(port: int, path: str = "/", upgrade: bool = True, **headers: str) -> tuple[int, bytes]:
    """One raw HTTP/1.1 request to the front, headers exactly as given (Host included): (status, body)."""
    lines = [f"GET {path} HTTP/1.1"]
    if upgrade:
        key = base64.b64encode(os.urandom(16)).decode()
        lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                  "Sec-WebSocket-Version: 13"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        deadline = time.monotonic() + WAIT
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    return status, body


def _wait_log(proc, text: str) -> None:
    deadline = time.monotonic() + WAIT
    while text not in proc.output():
        assert time.monotonic() < deadline, proc.output()
        time.sleep(0.1)


def test_a_foreign_origin_is_refused_and_the_usual_clients_pass(cluster):
    port = cluster.front_port
    here = f"127.0.0.1:{port}"
    status, body = request(port, Host=here, Origin="https://evil.example")
    assert status == 403
    error = json.loads(body)
    assert error["action"] == "error" and error["code"] == "origin-not-allowed"
    _wait_log(cluster.front, "origin-not-allowed")
    assert request(port, Host=here, Origin="null")[0] == 403  # sandboxed iframes, file:// pages
    assert request(port, Host=here, Origin="http://127.0.0.1.evil.example")[0] == 403

    assert request(port, Host=here)[0] == 101                                   # no Origin: not a browser
    assert request(port, Host=here, Origin=f"http://{here}")[0] == 101           # the viewer page it serves
    assert request(port, Host=f"localhost:{port}", Origin="http://localhost:5173")[0] == 101  # a local page
    assert request(port, Host=here, Origin="http://[::1]:8080")[0] == 101
    assert cluster.front.alive()


def test_a_host_it_does_not_serve_is_refused_for_websockets_and_files(cluster):
    port = cluster.front_port
    for upgrade in (True, False):
        status, body = request(port, upgrade=upgrade, Host=f"rebound.evil.example:{port}",
                               Origin=f"http://rebound.evil.example:{port}")
        assert status == 403 and json.loads(body)["code"] == "host-not-allowed"
    _wait_log(cluster.front, "host-not-allowed")
    assert request(port, upgrade=False, Host=f"127.0.0.1:{port}")[0] == 200  # the viewer page
    assert request(port, upgrade=False, Host=f"localhost:{port}")[0] == 200


@pytest.mark.parametrize("cluster", [("--allowed-origins", "https://app.example.com",
                                      "--allowed-hosts", "seasync.example.com")], indirect=True)
def test_listed_origins_and_hosts_are_admitted(cluster):
    port = cluster.front_port
    assert request(port, Host=f"127.0.0.1:{port}", Origin="https://app.example.com")[0] == 101
    assert request(port, Host=f"127.0.0.1:{port}", Origin="https://app.example.com:8443")[0] == 403
    assert request(port, Host="seasync.example.com", Origin="https://app.example.com")[0] == 101
    assert request(port, Host="seasync.example.com", Origin="https://seasync.example.com")[0] == 101  # own origin
