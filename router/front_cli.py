"""`sync-front`: run the websocket front (router/front.py) until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

import typer
import zmq

from common import logs
from common.wire import DEFAULT_ROUTER
from router.front import Front, FrontConfig

app = typer.Typer(add_completion=False)
log = logging.getLogger("seasync.front")


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
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True,
        help="More logging: -v for debug lines, -vv also for the websockets library."),
) -> None:
    """Serve seapig websocket clients and relay their sessions to the router."""
    logs.setup(verbose)
    logging.getLogger("websockets").setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    config = FrontConfig(router=router, host=host, port=port, max_frame=max_frame)
    try:
        asyncio.run(_serve(config))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        raise typer.Exit(1)
    except zmq.ZMQError as exc:
        log.error("cannot connect to router %s: %s", router, exc)
        raise typer.Exit(2)
    log.info("stopped")


async def _serve(config: FrontConfig) -> None:
    """Run the front with SIGINT/SIGTERM wired to a clean stop."""
    front = Front(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, front.stop)
    await front.run()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
