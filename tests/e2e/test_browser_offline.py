"""seasync.js offline in a real headless Chromium: a page reloaded while the front is down shows the last state.

The page (router/static/test.html with ``persist=``) is served by a plain static HTTP server of its own,
so it still loads while the front, which also serves pages, is down; its websocket goes to the front.
"""

from __future__ import annotations


from common.client import Client, Master
from tests.cluster import free_port, wait_port
from tests.e2e.conftest import wait_js

STATE = "window.seasyncState"


def test_page_reloaded_while_the_front_is_down_shows_the_stale_object_then_catches_up(
        browser, cluster, py_client, loop_thread):
    masters: dict[str, Master] = {}

    def setup(client: Client) -> None:
        masters["obj"] = client.master("e2e-offline", value={"n": 1, "text": "x" * 200}, version=[1, 0])

    py_client("owner", setup)
    obj = masters["obj"]
    port = free_port()
    cluster._start("static", ["-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", "router/static"])
    wait_port(port)
    page = (f"http://127.0.0.1:{port}/test.html?id=e2e-offline&persist=e2e-offline"
            f"&url=ws://127.0.0.1:{cluster.front_port}/")
    browser.get(page)
    browser.execute_script("localStorage.clear();")
    browser.get(page)
    wait_js(browser, f"{STATE} && {STATE}.valid && !{STATE}.stale && {STATE}.value && {STATE}.value.n === 1",
            what="the first value")

    cluster.front.kill()
    cluster.front.popen.wait(10)
    wait_js(browser, f"!{STATE}.connected && {STATE}.stale", what="the page to notice the front is gone")
    browser.refresh()
    wait_js(browser, f"{STATE} && {STATE}.value && {STATE}.value.n === 1 && {STATE}.stale && !{STATE}.connected",
            what="the reloaded page to show the persisted object, stale")
    assert '"n": 1' in browser.find_element("id", "value").text
    assert browser.find_element("id", "stale").text == "true"

    browser.execute_script("window.__sameDocument = 7;")
    cluster.start_front()
    wait_js(browser, f"{STATE}.connected && !{STATE}.stale", what="the page to reconnect and be confirmed")

    def change() -> None:
        obj.value["n"] = 2

    loop_thread.call(change)
    loop_thread.run(obj.bump())
    wait_js(browser, f"{STATE}.value.n === 2 && {STATE}.valid && !{STATE}.stale", what="the update, no reload")
    assert browser.execute_script("return window.__sameDocument;") == 7, "the page was reloaded"
    assert browser.find_element("id", "stale").text == "false"
