"""Access control through a real router started with --auth, and the registration limit."""

from __future__ import annotations

import pytest

from tests.cluster import Cluster
from tests.integration.wsclient import RawClient, update_of


@pytest.fixture
def guarded_cluster():
    c = Cluster()
    try:
        c.start_router("--auth", "tests.integration.auth_hook:authenticate", "--max-registrations", "5")
        c.start_front()
        yield c
    finally:
        c.stop()


def error(frame: dict) -> bool:
    return frame.get("action") == "error"


async def test_hook_decides_who_consumes_and_produces(guarded_cluster):
    url = guarded_cluster.ws_url
    async with RawClient(url, "admin", token="admin") as admin, RawClient(url, "reader", token="reader") as reader, \
            RawClient(url, "anon") as anon:
        assert (await anon.expect(error))["message"] == "authentication failed"

        await admin.send("object-producer-register", pattern="public-*")
        await reader.send("object-consumer-register", pattern="public-news", version_known=0)
        await admin.expect(lambda f: f.get("action") == "object-produce")
        await admin.send("object-patch", id="public-news", version_new=1, value={"headline": "hi"})
        assert (await reader.expect(update_of("public-news")))["value"] == {"headline": "hi"}

        await reader.send("object-patch", id="public-news", version_new=2, value={"headline": "forged"})
        assert "not allowed to produce" in (await reader.expect(error))["message"]
        await reader.send("object-consumer-register", pattern="private", version_known=0)
        assert "not allowed to consume" in (await reader.expect(error))["message"]
        await anon.send("object-consumer-register", pattern="public-news", version_known=0)
        assert (await anon.expect(error))["request"] == "object-consumer-register"
        assert await anon.quiet(0.5) == []  # nothing leaked to the refused client


async def test_registration_limit(guarded_cluster):
    async with RawClient(guarded_cluster.ws_url, token="admin") as c:
        for n in range(6):
            await c.send("object-consumer-register", pattern=f"o-{n}", version_known=0)
        err = await c.expect(error)
        assert "limit" in err["message"] and err["pattern"] == "o-5"


async def test_a_wildcard_consumer_gets_only_the_ids_the_hook_allows(guarded_cluster):
    url = guarded_cluster.ws_url
    async with RawClient(url, "admin", token="admin") as admin, RawClient(url, "viewer", token="viewer") as viewer:
        for oid in ("admin-keys", "public-news"):
            await admin.send("object-producer-register", pattern=oid)
        await viewer.send("object-consumer-register", pattern="*", version_known=0)
        await viewer.send("object-consumer-register", pattern="public-news", version_known=0)
        order = await admin.expect(lambda f: f.get("action") == "object-produce")
        assert order["id"] == "public-news"  # "*" does not even make admin-keys exist
        for oid in ("admin-keys", "public-news"):
            await admin.send("object-patch", id=oid, version_new=1, value={"secret": oid})
        assert (await viewer.expect(update_of("public-news")))["value"] == {"secret": "public-news"}
        await admin.send("object-patch", id="admin-keys", version_new=2, value={"secret": "k2"})
        await admin.send("object-patch", id="public-news", version_new=2, value={"n": 2})
        await viewer.expect(update_of("public-news", **{"version-new": 2}))
        assert not [f for f in viewer.frames if f.get("id") == "admin-keys"]

        # a writer may not name a dependency it may not read, nor upload what it does not produce
        await viewer.send("object-patch", id="public-news", version_new=3, value={"forged": 1})
        assert (await viewer.expect(error))["request"] == "object-patch"
        await admin.send("object-patch", id="public-other", version_new=1, value={})
        assert (await admin.expect(error))["code"] == "not-a-producer"

        # the token is revoked: re-sending the options drops every registration at once
        await viewer.send("client-options-set", options={"name": "viewer", "token": "revoked"})
        assert (await viewer.expect(error))["message"] == "authentication failed"
        dropped = await viewer.expect(lambda f: error(f) and f.get("code") == "access-revoked")
        assert dropped["pattern"] in ("*", "public-news")
        await viewer.quiet(0.5)
        admin.frames.clear()
        await admin.send("object-consumer-register", pattern="public-news", version_known=0)
        await admin.expect(lambda f: f.get("action") == "object-produce" and f["id"] == "public-news")
        await admin.send("object-patch", id="public-news", version_new=4, value={"n": 4})
        await admin.expect(update_of("public-news", **{"version-new": 4}))
        assert await viewer.quiet(0.5) == []


# ---- the cluster secret by default (issue 10 item 9) -------------------------------------------

import os  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import orjson  # noqa: E402
import zmq  # noqa: E402

from common import wire  # noqa: E402
from tests.cluster import REPO, Proc, free_port, wait_port  # noqa: E402

WAIT = 30.0


def _hello(secret: str | None, url: str, wait: float = 3.0) -> list[bytes] | None:
    """Join ``url`` as a worker-like peer (with CURVE keys from ``secret``, or none): the router's
    answer to HELLO, or None if it stays silent for ``wait`` seconds."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        if secret is not None:
            wire.secure_peer(sock, secret)
        sock.connect(url)
        sock.send_multipart([wire.HELLO, orjson.dumps({"role": "worker", "name": "intruder"})])
        return sock.recv_multipart() if sock.poll(int(wait * 1000)) else None
    finally:
        sock.close(0)
        ctx.term()


def _refused_and_said(router: Proc, secret: str | None, url: str, text: str) -> None:
    """A peer holding ``secret`` gets no answer, and the router's log says ``text``. The log comes from the
    socket monitor, best effort (an event can be missed while the router starts): like a real peer, the
    test tries again, a few times, before it calls the line missing."""
    for _attempt in range(4):
        assert _hello(secret, url) is None
        if text in router.output():
            return
        time.sleep(1.0)
    _wait_for(router, text)


def _wait_for(proc: Proc, text: str) -> None:
    deadline = time.monotonic() + WAIT
    while text not in proc.output():
        assert time.monotonic() < deadline, f"{text!r} not in the log:\n{proc.output()}"
        time.sleep(0.1)


@pytest.fixture
def no_secret_env(monkeypatch):
    """Processes started by the test inherit nothing about secrets: the defaults apply."""
    for name in ("SEASYNC_SECRET", "SEASYNC_INSECURE", "SEASYNC_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)


def _router(cwd, *extra: str) -> tuple[Proc, str]:
    url = f"tcp://127.0.0.1:{free_port()}"
    proc = Proc("router", ["-m", "router.cli", "--bind", url, *extra], cwd=cwd)
    wait_port(int(url.rsplit(":", 1)[1]))
    return proc, url


async def test_a_default_cluster_admits_only_processes_holding_its_secret(tmp_path, no_secret_env):
    router, url = _router(tmp_path)
    front = None
    try:
        secret_file = tmp_path / ".seasync-secret"
        assert secret_file.is_file()
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600  # only its user can read it
        secret = secret_file.read_text().strip()
        assert len(secret) >= 32

        # a local process without the secret, or with another one, is not answered, and the router says why
        _refused_and_said(router, None, url, "no cluster secret")
        _refused_and_said(router, "not-the-secret", url, "wrong cluster secret")
        assert router.alive()

        # one holding it is welcomed; so is a real front started from the same directory
        assert _hello(secret, url)[0] == wire.WELCOME
        port = free_port()
        front = Proc("front", ["-m", "router.front.cli", "--router", url, "--port", str(port)], cwd=tmp_path)
        wait_port(port)
        async with RawClient(f"ws://127.0.0.1:{port}", "viewer") as viewer:
            await viewer.send("object-consumer-register", pattern="SeapigServer::Statistics", version_known=0)
            await viewer.expect(update_of("SeapigServer::Statistics"))
        assert secret_file.read_text().strip() == secret  # read, not replaced
    except BaseException:
        print(router.output(), front.output() if front else "")
        raise
    finally:
        if front is not None:
            front.stop()
        router.stop()


def test_a_peer_that_hangs_up_mid_handshake_is_named_as_one_without_the_secret(tmp_path, no_secret_env):
    """A peer without the secret often reads the router's CURVE greeting first and hangs up: the router sees
    the handshake broken off, not a mechanism mismatch, and must still say what is probably wrong."""
    import socket

    from common.wire import BROKE_OFF

    router, url = _router(tmp_path)
    try:
        host, port = url.removeprefix("tcp://").rsplit(":", 1)
        deadline = time.monotonic() + WAIT
        while BROKE_OFF not in router.output():  # (the monitor's events are best effort: try again)
            assert time.monotonic() < deadline, f"not said:\n{router.output()}"
            with socket.create_connection((host, int(port)), timeout=5.0) as raw:
                raw.sendall(b"\xff" + b"\x00" * 8 + b"\x7f")  # the first bytes of a ZMTP greeting, then gone
                raw.recv(10)  # the router's greeting has begun
            time.sleep(0.3)
        assert "no cluster secret" in BROKE_OFF and router.alive()
    finally:
        router.stop()


def test_insecure_keeps_the_open_cluster_of_old(tmp_path, no_secret_env):
    router, url = _router(tmp_path, "--insecure")
    try:
        assert _hello(None, url)[0] == wire.WELCOME
        assert not (tmp_path / ".seasync-secret").exists()
    finally:
        router.stop()


def test_an_explicitly_empty_secret_is_insecure_too(tmp_path, no_secret_env, monkeypatch):
    monkeypatch.setenv("SEASYNC_SECRET", "")
    router, url = _router(tmp_path)
    try:
        assert _hello(None, url)[0] == wire.WELCOME
    finally:
        router.stop()


@pytest.mark.parametrize("module", ["router.cli", "router.front.cli", "worker.cli", "worker.notifier.cli"])
def test_every_command_refuses_a_secret_file_others_can_read(tmp_path, no_secret_env, module):
    """A secret that other users may read is no secret: each process says which file and what to do, and
    exits with status 2 before it binds or connects anything (one rule, common/secret.py)."""
    secret_file = tmp_path / ".seasync-secret"
    secret_file.write_text("x" * 43 + "\n")
    secret_file.chmod(0o644)
    result = subprocess.run([sys.executable, "-m", module], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    program = {"router.cli": "sync-router", "router.front.cli": "sync-front", "worker.cli": "sync-worker",
               "worker.notifier.cli": "sync-notifier"}[module]
    assert result.returncode == 2, result.stderr
    assert f"{program}: the cluster secret file .seasync-secret may be read by other users" in result.stderr
    assert "chmod 600" in result.stderr
