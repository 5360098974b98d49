"""`sync-front`: run the websocket front (router/front/server.py) until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import signal

import typer
import zmq

from common import logs
from common.secret import INSECURE_ENV, INSECURE_HELP, SECRET_ENV, SECRET_HELP, cluster_secret_or_exit
from common.wire import DEFAULT_ROUTER
from router.front import Admission, Front, FrontConfig, is_loopback

app = typer.Typer(add_completion=False)
log = logging.getLogger("seasync.front")

GC_YOUNG = 10_000  # allocations between young collections (Python's default: 700)


@app.command()
def front(
    router: str = typer.Option(
        DEFAULT_ROUTER, envvar="SEASYNC_ROUTER",
        help="ZeroMQ address of the router to connect to (its --bind address)."),
    host: str = typer.Option(
        "127.0.0.1", envvar="SEASYNC_HOST",
        help="Interface the websocket server listens on (0.0.0.0 for every interface)."),
    port: int = typer.Option(
        3001, envvar="SEASYNC_FRONT_PORT", min=0, max=65535,
        help="Websocket port; clients connect to ws://HOST:PORT/ with any path."),
    max_frame: int = typer.Option(
        1 << 20, envvar="SEASYNC_MAX_FRAME", min=1,
        help="Largest websocket message accepted, in bytes; a client sending more is closed with 1009."),
    secret: str | None = typer.Option(None, "--secret", envvar=SECRET_ENV, show_default=False, help=SECRET_HELP),
    insecure: bool = typer.Option(False, "--insecure", envvar=INSECURE_ENV, help=INSECURE_HELP),
    max_connections: int = typer.Option(
        10_000, envvar="SEASYNC_MAX_CONNECTIONS", min=1,
        help="Websocket connections served at once; beyond, an upgrade is answered 503."),
    pause_above: int = typer.Option(
        256 << 10, envvar="SEASYNC_PAUSE_ABOVE", min=1,
        help="Bytes waiting to be written to one client above which the router holds its updates "
             "(it later sends only the latest state of what changed)."),
    resume_below: int = typer.Option(
        64 << 10, envvar="SEASYNC_RESUME_BELOW", min=0,
        help="Bytes waiting below which a held client gets its updates again."),
    slow_max_buffer: int = typer.Option(
        16 << 20, envvar="SEASYNC_SLOW_MAX_BUFFER", min=1,
        help="Bytes waiting for one client above which it is closed with 1008 'consumer too slow'."),
    slow_timeout: float = typer.Option(
        30.0, envvar="SEASYNC_SLOW_TIMEOUT", min=0.0,
        help="Seconds a client may stay held (not reading) before it is closed with 1008."),
    send_buffer: int = typer.Option(
        0, envvar="SEASYNC_SEND_BUFFER", min=0,
        help="Kernel send buffer (SO_SNDBUF) per websocket, in bytes; 0 keeps the kernel's autotuning. "
             "Smaller means a slow client is noticed (and coalesced) sooner, but caps throughput on "
             "long links."),
    ping_interval: float = typer.Option(
        10.0, envvar="SEASYNC_PING_INTERVAL", min=0.0,
        help="Seconds between websocket pings to each client (0: no pings), as seapig."),
    ping_timeout: float = typer.Option(
        50.0, envvar="SEASYNC_PING_TIMEOUT", min=0.0,
        help="A client whose pong is this many seconds late is closed (1011)."),
    allowed_origins: str = typer.Option(
        "", "--allowed-origins", envvar="SEASYNC_ALLOWED_ORIGINS", show_default=False,
        help="Comma-separated browser origins (https://app.example.com[:port]) whose pages may open a websocket, "
             "besides the front's own origin and loopback ones (http://localhost:ANY, http://127.0.0.1:ANY); "
             "'*' for any. Clients that send no Origin (not browsers) are always admitted; others get 403."),
    allowed_hosts: str = typer.Option(
        "", "--allowed-hosts", envvar="SEASYNC_ALLOWED_HOSTS", show_default=False,
        help="Comma-separated names the front answers to in the Host header, besides --host, IP addresses, "
             "loopback names and (listening on 0.0.0.0) this machine's names; '*' for any. Others get 403 "
             "(DNS rebinding)."),
    credit: int = typer.Option(
        8, envvar="SEASYNC_FRONT_CREDIT", min=0, max=1024,
        help="SENDS messages the router may have in flight to this front before it holds their updates, "
             "latest wins, until the front has written them (0: no credit, every version queued as before)."),
    write_delay: float = typer.Option(
        0.0, envvar="SEASYNC_FRONT_WRITE_DELAY", min=0.0, hidden=True,
        help="Testing only: seconds each burst of router frames blocks the front (a front slower than its router)."),
    metrics_port: int = typer.Option(
        0, envvar="SEASYNC_FRONT_METRICS_PORT", min=0, max=65535,
        help="Serve Prometheus metrics on http://127.0.0.1:PORT/metrics (0: off)."),
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True,
        help="More logging: -v for debug lines, -vv also for the websockets library."),
) -> None:
    """Serve seapig websocket clients and relay their sessions to the router."""
    logs.setup(verbose)
    logging.getLogger("websockets").setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    if resume_below >= pause_above:
        log.error("! --resume-below (%d) must be smaller than --pause-above (%d)", resume_below, pause_above)
        raise typer.Exit(2)
    if not is_loopback(host) and not os.environ.get("SEASYNC_AUTH"):
        log.warning("! LISTENING ON %s WITHOUT AN ACCESS HOOK: anyone who can reach this address can "
                    "connect, read and publish every object; set an --auth hook on the router "
                    "(SEASYNC_AUTH).", host)
    secret = cluster_secret_or_exit("sync-front", secret, insecure)
    _raise_fd_limit(max_connections + 256)
    config = FrontConfig(router=router, host=host, port=port, max_frame=max_frame, secret=secret,
                         max_connections=max_connections, pause_above=pause_above,
                         resume_below=resume_below, slow_max_buffer=slow_max_buffer,
                         slow_timeout=slow_timeout, send_buffer=send_buffer,
                         ping_interval=ping_interval, ping_timeout=ping_timeout,
                         allowed_origins=_split(allowed_origins), allowed_hosts=_split(allowed_hosts),
                         credit=credit, write_delay=write_delay)
    try:
        Admission.for_front(host, config.allowed_hosts, config.allowed_origins)
    except ValueError as exc:
        log.error("! --allowed-origins: %s", exc)
        raise typer.Exit(2) from None
    _tune_gc()
    try:
        if os.environ.get("X_UVLOOP"):
            import uvloop
            uvloop.run(_serve(config, metrics_port))
        else:
            asyncio.run(_serve(config, metrics_port))
    except OSError as exc:
        log.error("! cannot listen on %s:%d: %s", host, port, exc)
        raise typer.Exit(1) from None
    except zmq.ZMQError as exc:
        log.error("! cannot connect to router %s: %s", router, exc)
        raise typer.Exit(2) from None
    log.info("= stopped")


def _split(values: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in values.split(",") if v.strip())


def _tune_gc() -> None:
    """Fewer, cheaper garbage collections: they were 30% of the front's CPU while 2,000 clients
    reconnected at once (each connection allocates ~70 tracked objects, and with Python's defaults
    that also triggers full collections over every live connection).

    The objects made at startup (modules, classes) live as long as the process: frozen, no
    collection scans them again. A larger young generation means fewer collections for the same
    allocations and fewer objects promoted to the older ones; cyclic garbage waits a little longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])


def _raise_fd_limit(wanted: int) -> None:
    """One descriptor per websocket: lift the soft limit towards ``wanted`` (never above the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning("! only %d file descriptors allowed (ulimit -Hn): fewer than --max-connections", target)


async def _serve(config: FrontConfig, metrics_port: int = 0) -> None:
    """Run the front with SIGINT/SIGTERM wired to a clean stop."""
    front = Front(config)
    if metrics_port:
        from router.metrics import serve_front_metrics

        serve_front_metrics(front, metrics_port)
        log.info("= Prometheus metrics on http://127.0.0.1:%d/metrics", metrics_port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, front.stop)
    await front.run()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
