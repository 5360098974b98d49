"""The to-do page (router/static/todo.html, seasync.js collections) in a headless Chromium against a cluster
whose worker serves producers/todos.py's ``todos/*``; a Python client writes the same list."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import wait_js

PRODUCERS = '''
from worker import Collection

class Todos(Collection):
    patterns = ["todos/*"]
    url = {url!r}
'''


def test_todo_page_and_a_python_client_share_one_list(browser, cluster, py_client, loop_thread, page_url,
                                                      tmp_path: Path) -> None:
    producers = tmp_path / "producers"
    producers.mkdir()
    (producers / "todos.py").write_text(PRODUCERS.format(url=str(tmp_path / "todos.sqlite3")))
    cluster.start_workers(producers, 1)
    client = py_client("e2e-todo")
    todos = loop_thread.call(client.collection, "todos/e2e")
    loop_thread.run(todos.wait(timeout=30))

    browser.get(page_url("/todo.html?list=e2e"))
    wait_js(browser, "document.getElementById('status').textContent === 'connected'", what="the page to connect")
    box = browser.find_element("id", "text")
    box.send_keys("milk")
    browser.find_element("css selector", "#add button[type=submit]").click()
    loop_thread.run(todos.wait(lambda v: any(item.get("text") == "milk" for item in v.values()), timeout=30))

    version = loop_thread.run(todos.update(insert=[{"id": "py-1", "text": "eggs", "done": False}]))
    assert version >= 3
    wait_js(browser, "[...document.querySelectorAll('#items li span')].map((s) => s.textContent).join(',') "
            "=== 'milk,eggs'", what="both tasks on the page")
    browser.find_element("css selector", "li[data-id='py-1'] input").click()  # done
    loop_thread.run(todos.wait(lambda v: v.get("py-1", {}).get("done") is True, timeout=30))
    browser.find_element("id", "clear-done").click()
    loop_thread.run(todos.wait(lambda v: "py-1" not in v and len(v) == 1, timeout=30))
    wait_js(browser, "document.querySelectorAll('#items li').length === 1", what="the done task removed")
    assert browser.find_element("id", "error").text == ""
