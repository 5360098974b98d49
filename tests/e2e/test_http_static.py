"""The front answers plain HTTP GETs on its websocket port with router/static/ (no browser needed)."""

from __future__ import annotations

import http.client

from websockets.asyncio.client import connect

from common import codec
from router.front import STATIC_DIR, static_file


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)  # putrequest: the path is sent verbatim
        conn.endheaders()
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


FILES = [
    ("/", "index.html", "text/html"),
    ("/index.html", "index.html", "text/html"),
    ("/seasync.js", "seasync.js", "text/javascript"),
    ("/viewer.js?v=2", "viewer.js", "text/javascript"),
    ("/viewer.css", "viewer.css", "text/css"),
    ("/test.html?id=cars&url=ws://x/", "test.html", "text/html"),
    ("/todo.html?list=home", "todo.html", "text/html"),
]
NOT_FOUND = [
    "/missing.js", "/../cli.py", "/%2e%2e/cli.py", "/..%2fcli.py", "/static/seasync.js",
    "/.hidden", "//etc/passwd", "/%00", "/cli.py", "/..\\cli.py",
]


def test_static_files_with_their_content_types_and_404_for_anything_else(cluster):
    for path, name, kind in FILES:
        status, headers, body = get(cluster.front_port, path)
        assert status == 200, path
        assert headers["content-type"].startswith(kind), (path, headers)
        assert headers["content-length"] == str(len(body))
        assert body == (STATIC_DIR / name).read_bytes(), path
    for path in NOT_FOUND:
        status, _, body = get(cluster.front_port, path)
        assert status == 404, (path, body)


def test_static_file_names_stay_inside_the_directory(tmp_path):
    (tmp_path / "a.js").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.js").write_text("y")
    assert static_file("/a.js", tmp_path) == tmp_path / "a.js"
    assert static_file("/a.js?x=1#y", tmp_path) == tmp_path / "a.js"
    for path in ("/sub/b.js", "/sub%2fb.js", "/../a.js", "/.", "/..", "/a.exe", "/sub"):
        assert static_file(path, tmp_path) is None, path


async def test_websockets_still_work_on_any_path(cluster):
    for path in ("/", "/index.html", "/some/app/path"):
        async with connect(cluster.ws_url + path, open_timeout=10) as ws:
            await ws.send(codec.dumps({"action": "object-consumer-unregister", "pattern": "never"}).decode())
            reply = codec.loads(await ws.recv())
            assert reply["action"] == "error" and reply["request"] == "object-consumer-unregister"
