"""Prometheus metrics for the router and the fronts, served over HTTP by prometheus_client (``--metrics-port``).

Nothing is counted per message for Prometheus: gauges and counters are read from the router's own
state and totals when a scrape arrives (a custom collector), so an unscraped router pays nothing.
Only the production-time histogram is observed as productions finish, once each.

Metrics (all prefixed ``seasync_router_``): ``sessions``, ``peers``, ``objects``, ``queue_length``,
``delayed_objects`` (gauges); ``productions_total``, ``production_errors_total``,
``messages_in_total``, ``messages_out_total``, ``bytes_in_total``, ``bytes_out_total`` (counters);
``production_seconds`` (histogram); and, without the prefix, as issue 17 names it,
``seasync_productions_unchanged_total`` (uploads whose data equalled the data held). A front's (``seasync_front_``): ``connections``, ``paused_sessions``
(gauges), ``messages_in_total``, ``bytes_in_total``, ``messages_out_total``, ``bytes_out_total``.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from router.front import Front
    from router.router import Router

PREFIX = "seasync_router_"

log = logging.getLogger("seasync.metrics")

SCRAPE_TIMEOUT = 5.0
"""Seconds a metrics connection may stay silent (no request, or a request trickling in) before it is
closed: a scrape takes milliseconds; an idle connection must not hold a thread for ever."""
SCRAPE_THREADS = 8
"""Connections served at once; one more is closed at once rather than given a thread (300 idle
connections were 300 threads with prometheus_client's own server)."""
REFUSAL_LOG_INTERVAL = 10.0


class _Handler(WSGIRequestHandler):
    """One scrape; ``timeout`` makes every read of the connection give up after SCRAPE_TIMEOUT."""

    timeout = SCRAPE_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged (one every few seconds, forever)."""


class BoundedMetricsServer(socketserver.ThreadingMixIn, WSGIServer):
    """A thread per scrape, at most ``threads`` at once, each bounded in time by ``_Handler.timeout``."""

    daemon_threads = True
    threads = SCRAPE_THREADS

    def __init__(self, address: tuple[str, int], handler: type) -> None:
        self._slots = threading.BoundedSemaphore(self.threads)
        self._refused = 0
        self._refusal_logged = float("-inf")
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refused += 1
            now = time.monotonic()
            if now - self._refusal_logged >= REFUSAL_LOG_INTERVAL:
                log.warning("! metrics: %d connection(s) refused, %d scrapes already in progress (latest from %s)",
                            self._refused, self.threads, client_address[0])
                self._refused, self._refusal_logged = 0, now
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A silent or vanished scraper is routine: one debug line, no traceback on stderr."""
        log.debug("= metrics: connection from %s ended: timed out or reset", client_address[0])


def start_metrics_server(registry: CollectorRegistry, port: int, host: str = "127.0.0.1",
                         threads: int = SCRAPE_THREADS) -> BoundedMetricsServer:
    """Serve ``registry`` at ``http://host:port/metrics`` from a daemon thread; returns the server."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(BoundedMetricsServer):
        pass

    Server.address_family, Server.threads = family, threads
    httpd = make_server(host, port, make_wsgi_app(registry), Server, handler_class=_Handler)
    threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True).start()
    return httpd


class RouterCollector:
    """Reads the router's state at scrape time (the scrape runs in prometheus_client's thread: it reads
    sizes and integers only, which is safe while the router loop runs)."""

    def __init__(self, router: "Router") -> None:
        self.router = router

    def collect(self) -> Iterator[Metric]:
        store, totals = self.router.store, self.router.counters.totals
        gauges = {
            "sessions": ("Client sessions (websocket clients, workers, the notifier)", len(store.sessions)),
            "peers": ("Connected fronts, workers and notifiers", len(self.router.peers)),
            "objects": ("Live objects", len(store.objects)),
            "queue_length": ("Objects waiting for a free producer", len(store.queue)),
            "delayed_objects": ("Objects held back by a retry backoff or --min-interval", len(store.delayed)),
        }
        for name, (help_text, value) in gauges.items():
            yield GaugeMetricFamily(PREFIX + name, help_text, value=value)
        counters = {
            "productions": ("Productions answered with data", store.productions_total),
            "production_errors": ("Productions that failed (producer error or timeout)", store.errors_total),
            "messages_in": ("Client frames received", totals["messages_in"]),
            "messages_out": ("Frames delivered to sessions", totals["messages_out"]),
            "bytes_in": ("Bytes of client frames received", totals["bytes_in"]),
            "bytes_out": ("Bytes delivered to sessions", totals["bytes_out"]),
        }
        for name, (help_text, value) in counters.items():
            yield CounterMetricFamily(PREFIX + name, help_text, value=value)
        # the name issue 17 gave it (no "router_": it counts productions, whoever made them); a total only,
        # as a per-producer label would be unbounded
        yield CounterMetricFamily("seasync_productions_unchanged",
                                  "Uploads whose data equalled the data held (only the version moved)",
                                  value=store.unchanged_total)


def serve_metrics(router: "Router", port: int, host: str = "127.0.0.1") -> Histogram:
    """Start the HTTP endpoint (``http://host:port/metrics``); returns the production-time histogram."""
    registry = CollectorRegistry()
    registry.register(RouterCollector(router))
    histogram = Histogram(PREFIX + "production_seconds", "Time from production order to answer",
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                          registry=registry)
    start_metrics_server(registry, port, host)
    return histogram


class FrontCollector:
    """A front's connections and traffic, read at scrape time (plain integers and dict sizes)."""

    def __init__(self, front: "Front") -> None:
        self.front = front

    def collect(self) -> Iterator[Metric]:
        front, prefix = self.front, "seasync_front_"
        yield GaugeMetricFamily(prefix + "connections", "Open websocket sessions", value=len(front._sessions))
        yield GaugeMetricFamily(prefix + "paused_sessions", "Sessions paused because their client reads slowly",
                                value=len(front._paused))
        for name, help_text, value in (
                ("messages_in", "Client frames received", front.messages_in),
                ("bytes_in", "Bytes of client frames received", front.bytes_in),
                ("messages_out", "Frames written to clients", front._fanout.deliveries),
                ("bytes_out", "Bytes written to clients", front._fanout.bytes_out)):
            yield CounterMetricFamily(prefix + name, help_text, value=value)


def serve_front_metrics(front: "Front", port: int, host: str = "127.0.0.1") -> None:
    """Start a front's metrics endpoint (``http://host:port/metrics``)."""
    registry = CollectorRegistry()
    registry.register(FrontCollector(front))
    start_metrics_server(registry, port, host)
