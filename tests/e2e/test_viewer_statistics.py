"""The viewer's Statistics tab in a real headless Chromium, reading SeapigServer::Statistics in seapig's
shape (time scales, entities, closed slots, histograms with their multiplier) from a real cluster."""

from __future__ import annotations


from common.client import Client
from tests.e2e.conftest import browser_log, wait_js

ENTITIES = ("connections-count", "message-incoming-count", "message-incoming-size",
            "message-incoming-processing-time", "message-outgoing-count", "message-outgoing-size")


def test_statistics_tab_draws_seapigs_time_slots(browser, cluster, py_client, loop_thread, page_url):
    def setup(client: Client) -> None:
        client.master("e2e-stats", value={"n": 1}, version=[1, 0])

    py_client("owner", setup)
    watcher = py_client("watcher", lambda c: c.consume("e2e-stats"))
    loop_thread.run(watcher.consume("e2e-stats").wait(timeout=30))

    browser.get(page_url("/#statistics"))
    wait_js(browser, "!document.getElementById('tab-statistics').hidden", what="the statistics tab")
    cards = "[...document.querySelectorAll('#slots[data-scale=\"seconds\"] [data-entity]')].map(e => e.dataset.entity)"
    wait_js(browser, f"{cards}.length === 6", what="a card per seapig entity")
    assert sorted(browser.execute_script(f"return {cards};")) == sorted(ENTITIES)

    # closed slots arrive: aggregates of the last slot, as the metrics descriptors say to show them
    size = "document.querySelector('#slots [data-entity=\"message-outgoing-size\"]')"
    wait_js(browser, f"{size}.querySelector('[data-aggregate=\"sum\"]')", what="the last slot's outgoing sum")
    shown = browser.execute_script(f"return [...{size}.querySelectorAll('[data-aggregate]')].map(e => e.dataset.aggregate);")
    assert shown == ["sum", "average", "maximum"]  # count is {"show": false} for a size
    count = "document.querySelector('#slots [data-entity=\"message-incoming-count\"] [data-aggregate=\"count\"]')"
    wait_js(browser, count, what="the incoming count")
    # the histogram of a slot with traffic (the viewer's own updates go out every second), drawn from
    # the buckets with metrics.histogram.multiplier
    wait_js(browser, f"{size}.querySelector('svg.spectrum rect[data-bucket]')", what="a histogram bar")
    bucket = int(browser.execute_script(f"return {size}.querySelector('svg.spectrum rect[data-bucket]').dataset.bucket;"))
    assert 10 <= bucket <= 60  # frames of 10 B to 1 MB
    connections = "document.querySelector('#slots [data-entity=\"connections-count\"] [data-aggregate=\"last\"]')"
    wait_js(browser, f"{connections} && parseInt({connections}.textContent.replace('last', '')) >= 3",
            what="the connections (owner, watcher, the viewer)")

    # another scale: the same entities, from its own arrays
    browser.find_element("css selector", '#slots button[data-scale="minutes"]').click()
    wait_js(browser, "document.querySelector('#slots[data-scale=\"minutes\"]')", what="the minutes scale")
    wait_js(browser, "[...document.querySelectorAll('#slots[data-scale=\"minutes\"] [data-entity]')].length === 6",
            what="the minutes scale's entities")
    # seasync's own totals are still there (SeasyncServer::Statistics)
    wait_js(browser, "document.querySelector('[data-stat=\"objects\"] .big')", what="the objects count")
    errors = [line for line in browser_log(browser).splitlines() if "SEVERE" in line and "TypeError" in line]
    assert not errors, errors
