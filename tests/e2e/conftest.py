"""Fixtures for the browser end-to-end tests: a headless Debian Chromium driven by Selenium, and a
Python seasync client running on its own event-loop thread (Selenium calls block, so the client
must not share the test's thread).

Chromium and chromedriver come from Debian (scripts/test.sh installs them). Without them the
browser tests are skipped, except under CI (``CI`` set), where a missing browser is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from common.client import Client

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT = 30.0  # seconds; generous for a loaded 2-core machine
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,800",
]


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run under CI: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module, with a fresh profile."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            _unavailable(f"{path} is missing (apt-get install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never try to download a driver
    profile = tempfile.mkdtemp(prefix="seasync-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(autouse=True)
def _print_browser_log_on_failure(request: Any) -> Iterator[None]:
    """A failed browser test prints the page's console (the test that uses ``browser`` only)."""
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed and "browser" in request.fixturenames:
        print("===== browser console\n" + browser_log(request.getfixturevalue("browser")))


def browser_log(driver: Any) -> str:
    """The page's console messages so far (printed when a test fails)."""
    try:
        return "\n".join(f"{e['level']} {e['message']}" for e in driver.get_log("browser"))
    except Exception as exc:  # the driver may be gone
        return f"(no browser log: {exc})"


def wait_js(driver: Any, expression: str, timeout: float = WAIT, what: str | None = None) -> Any:
    """Poll a JavaScript expression in the page until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = driver.execute_script(f"return ({expression});")
        except Exception as exc:  # the page may be navigating; retry
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or expression}; last: {last!r}\n"
                                 f"browser log:\n{browser_log(driver)}")
        time.sleep(0.1)


class LoopThread:
    """An asyncio loop on a daemon thread: run coroutines there from synchronous test code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="e2e-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = WAIT) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a plain function on the loop thread (the client is not thread-safe)."""
        async def call() -> Any:
            return fn(*args, **kwargs)
        return self.run(call())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture
def py_client(cluster, loop_thread) -> Iterator[Callable[..., Client]]:
    """Make Python clients connected to the cluster's front (on the loop thread); closed at the end."""
    made: list[Client] = []

    def make(name: str = "e2e-python", setup: Callable[[Client], Any] | None = None) -> Client:
        async def start() -> Client:
            client = Client(cluster.ws_url, name=name, reconnect_delay=0.2, max_reconnect_delay=1.0)
            if setup is not None:
                setup(client)  # masters/consumers registered before the first connect
            await client.connect()
            return client
        client = loop_thread.run(start())
        made.append(client)
        return client

    yield make
    for client in made:
        loop_thread.run(client.close())


@pytest.fixture
def page_url(cluster) -> Callable[[str], str]:
    """``page_url("/test.html?id=x")``: an address on the cluster's front (HTTP on the websocket port)."""
    return lambda path: f"http://127.0.0.1:{cluster.front_port}{path}"
