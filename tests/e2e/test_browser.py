"""The browser client (router/static/seasync.js) in a real headless Chromium against a real cluster.

Pages are served by the front itself over plain HTTP on its websocket port. Masters and producers
are Python clients (common/client/) on their own event-loop thread.
"""

from __future__ import annotations


from common.client import Client, Master
from tests.e2e.conftest import browser_log, wait_js

STATE = "window.seasyncState"


def test_page_shows_an_object_follows_updates_and_survives_a_front_restart(
        browser, cluster, py_client, loop_thread, page_url):
    masters: dict[str, Master] = {}

    def setup(client: Client) -> None:
        masters["obj"] = client.master("e2e-obj", value={"n": 1, "items": ["a"]}, version=[1, 0])

    py_client("owner", setup)
    obj = masters["obj"]
    browser.get(page_url("/test.html?id=e2e-obj"))
    wait_js(browser, f"{STATE} && {STATE}.valid && {STATE}.value && {STATE}.value.n === 1", what="the first value")
    assert '"items"' in browser.find_element("id", "value").text

    def change(n: int) -> None:
        obj.value["n"] = n
        obj.value["items"].append(str(n))

    loop_thread.call(change, 2)
    loop_thread.run(obj.bump())
    wait_js(browser, f"{STATE}.value.n === 2 && {STATE}.version[1] === 1", what="the bumped version")
    assert browser.find_element("id", "version").text == "[1,1]"
    assert obj.last_upload == "patch" or obj.last_upload == "value"

    # The front dies and comes back: the same page (no reload) reconnects, resyncs and shows the next update.
    browser.execute_script("window.__sameDocument = 42;")
    cluster.front.kill()
    cluster.front.popen.wait(10)
    wait_js(browser, f"!{STATE}.connected && !{STATE}.valid", what="the page to notice the front is gone")
    cluster.start_front()
    wait_js(browser, f"{STATE}.connected && {STATE}.valid", what="the page to reconnect")
    loop_thread.call(change, 3)
    loop_thread.run(obj.bump())
    wait_js(browser, f"{STATE}.value.n === 3 && {STATE}.value.items.length === 3", what="the update after the restart")
    assert browser.execute_script("return window.__sameDocument;") == 42, "the page was reloaded"
    assert browser.execute_script(f"return {STATE}.errors;") == []


def test_dependency_bump_reproduces_the_object_in_the_page(browser, cluster, py_client, page_url, loop_thread):
    masters: dict[str, Master] = {}
    built: list[object] = []

    def produce(object_id: str, inferred: object):
        dep = masters["dep"]
        built.append(inferred)
        return {"built": len(built), "dep": dep.value["x"]}, {"Dep::e2e": dep.version}

    py_client("notifier", lambda c: masters.setdefault("dep", c.master("Dep::e2e", value={"x": "one"}, version=[5, 0])))
    py_client("worker", lambda c: c.master("report", produce=produce))
    browser.get(page_url("/test.html?id=report"))
    wait_js(browser, f"{STATE} && {STATE}.valid && {STATE}.value && {STATE}.value.dep === 'one'", what="the report")

    dep = masters["dep"]
    loop_thread.call(dep.value.__setitem__, "x", "two")
    loop_thread.run(dep.bump())
    value = wait_js(browser, f"{STATE}.value.dep === 'two' && {STATE}.value", what="the re-produced report")
    assert value["built"] >= 2
    assert browser.execute_script(f"return {STATE}.version;") == {"Dep::e2e": [5, 1]}


def test_page_resyncs_a_wrong_copy_from_the_real_router(browser, cluster, py_client, loop_thread, page_url):
    """The two resync paths of seasync.js against the router: a patch that does not apply to what the page
    holds (its copy is corrupted here on purpose), and a patch from a version the page does not hold."""
    masters: dict[str, Master] = {}
    py_client("owner", lambda c: masters.setdefault("m", c.master("e2e-sync", value={"n": 1}, version=[1, 0])))
    m = masters["m"]
    browser.get(page_url("/test.html?id=e2e-sync"))
    wait_js(browser, f"{STATE} && {STATE}.valid && {STATE}.value.n === 1", what="the first value")
    consumer = "window.seasyncClient.consume('e2e-sync')"

    browser.execute_script(f"{consumer}.value = {{}};")  # "replace /n" cannot apply to this
    loop_thread.call(m.value.__setitem__, "n", 2)
    loop_thread.run(m.bump())
    wait_js(browser, f"{consumer}.valid && {consumer}.value.n === 2 && {consumer}.version[1] === 1",
            what="a full value after a patch that did not apply")

    browser.execute_script(f"{consumer}.version = [1, 77];")  # the next patch's base is not what it holds
    loop_thread.call(m.value.__setitem__, "n", 3)
    loop_thread.run(m.bump())
    wait_js(browser, f"{consumer}.valid && {consumer}.value.n === 3 && {consumer}.version[1] === 2",
            what="a resync after a patch from a version the page does not hold")
    log = browser_log(browser)
    assert "does not apply" in log and "an update was lost" in log, log


# ---- the viewer (index.html) over the router's introspection objects ----------------------------------

def _rows(browser, table: str) -> list[str]:
    return browser.execute_script(
        f"return [...document.querySelectorAll('#{table} tbody tr[data-id]')].map(r => r.dataset.id);")


def _row_text(browser, table: str, id_prefix: str) -> str:
    """A row's text, read in one script call: tables are re-rendered every second, so elements go stale."""
    return browser.execute_script(
        "const row = [...document.querySelectorAll(`#${arguments[0]} tbody tr[data-id]`)]"
        ".find(r => r.dataset.id.startsWith(arguments[1])); return row ? row.innerText : null;", table, id_prefix)


def _click_tab(browser, tab: str) -> None:
    browser.find_element("css selector", f'[data-tab="{tab}"]').click()
    wait_js(browser, f"!document.getElementById('tab-{tab}').hidden", what=f"the {tab} tab")


def test_viewer_lists_objects_connections_workers_and_observes_a_wildcard(
        browser, cluster, py_client, loop_thread, page_url, tmp_path):
    (tmp_path / "e2e_producers.py").write_text(
        "from worker import Producer\n\n"
        "class Greeting(Producer):\n"
        "    patterns = ['e2e-greeting']\n\n"
        "    def produce(self, object_id):\n"
        "        return {'hello': 'browser'}, 1\n")
    cluster.start_workers(tmp_path, 1)
    masters: dict[str, Master] = {}

    def setup_owner(client: Client) -> None:
        masters["one"] = client.master("e2e-view-1", value={"n": 1}, version=[1, 0])
        masters["two"] = client.master("e2e-view-2", value={"n": 2, "list": [1, 2, 3]}, version=[1, 0])

    py_client("owner", setup_owner)
    watcher = py_client("watcher", lambda c: (c.consume("e2e-view-1"), c.consume("e2e-greeting")))
    loop_thread.run(watcher.consume("e2e-greeting").wait(timeout=30))

    browser.get(page_url("/"))
    assert browser.find_element("id", "url").get_attribute("value") == f"ws://127.0.0.1:{cluster.front_port}/"
    wait_js(browser, "document.querySelector('#objects-table tr[data-id=\"e2e-view-1\"]')", what="e2e-view-1 listed")
    wait_js(browser, "document.querySelector('#objects-table tr[data-id=\"e2e-greeting\"]')", what="e2e-greeting listed")
    row = _row_text(browser, "objects-table", "e2e-greeting")
    assert "current" in row and "watcher:" in row and "worker:" in row, row
    headers = browser.execute_script("return [...document.querySelectorAll('#objects-table th')].map(t => t.innerText);")
    assert "PRODUCTIONS UNCHANGED" in " ".join(headers).upper(), headers  # issue 17 item 3: next to Productions
    assert "e2e-view-2" not in _rows(browser, "objects-table"), "nobody consumes e2e-view-2 yet"
    filt = browser.find_element("id", "objects-filter")
    filt.send_keys("e2e-view-*")
    wait_js(browser, "[...document.querySelectorAll('#objects-table tbody tr[data-id]')].length === 1",
            what="the wildcard filter")
    assert _rows(browser, "objects-table") == ["e2e-view-1"]

    _click_tab(browser, "connections")
    wait_js(browser, "[...document.querySelectorAll('#connections-table tr[data-id^=\"web-viewer:\"]')].length === 1",
            what="the viewer's own connection")
    ids = _rows(browser, "connections-table")
    assert any(i.startswith("watcher:") for i in ids) and any(i.startswith("owner:") for i in ids), ids
    watcher_row = _row_text(browser, "connections-table", "watcher:")
    assert "e2e-view-1" in watcher_row and "e2e-greeting" in watcher_row, watcher_row

    _click_tab(browser, "workers")
    wait_js(browser, "document.querySelector('#workers-table tbody tr[data-id^=\"worker:\"]')", what="a worker row")
    worker_row = _row_text(browser, "workers-table", "worker:")
    assert "MB" in worker_row or "kB" in worker_row, worker_row  # its memory, from the worker's stats

    _click_tab(browser, "statistics")
    wait_js(browser, "document.querySelector('[data-rate=\"messages_in\"] svg.spark polyline')", what="a sparkline")
    objects = browser.execute_script("return document.querySelector('[data-stat=\"objects\"] .big').textContent;")
    assert int(objects.replace(",", "")) >= 3
    unchanged = browser.execute_script("return document.querySelector('[data-stat=\"unchanged\"] .big').textContent;")
    assert unchanged == "0"  # the total of unchanged productions (none here)

    _click_tab(browser, "observe")
    field = browser.find_element("id", "observe-pattern")
    field.clear()
    field.send_keys("e2e-view-*")
    browser.find_element("css selector", "#observe-form button").click()
    card = "document.querySelector('#observe-output article[data-id=\"e2e-view-2\"]')"
    wait_js(browser, f"{card} && {card}.dataset.valid === 'true' && {card}.textContent.includes('\"list\"')",
            what="e2e-view-2 observed through the wildcard")
    wait_js(browser, "document.querySelector('#observe-output article[data-id=\"e2e-view-1\"]')", what="e2e-view-1")
    two = masters["two"]
    loop_thread.call(two.value.__setitem__, "n", 22)
    loop_thread.run(two.bump())
    wait_js(browser, f"{card}.querySelector('pre').textContent.includes('\"n\": 22')", what="the live update")
    assert browser.execute_script(f"return {card}.dataset.version;") == "[1,1]"
