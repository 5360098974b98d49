"""``sync-worker``: run a pool of worker processes producing objects for a seasync router."""

from __future__ import annotations

import os
from pathlib import Path

import typer
import zmq

from common import logs, wire
from common.secret import INSECURE_ENV, INSECURE_HELP, SECRET_ENV, SECRET_HELP, cluster_secret_or_exit
from worker.pool import Pool
from worker.process import DEFAULT_PREFETCH, DEFAULT_PRODUCTION_TIMEOUT

app = typer.Typer(add_completion=False, help=__doc__)


def _check_endpoint(url: str) -> str:
    """Refuse a malformed ZeroMQ address here, rather than in N workers that would crash in a loop."""
    with zmq.Context() as ctx, ctx.socket(zmq.DEALER) as probe:
        probe.setsockopt(zmq.LINGER, 0)
        try:
            probe.connect(url)
        except zmq.ZMQError as exc:
            raise typer.BadParameter(f"{url!r} is not a ZeroMQ address like tcp://host:port ({exc})") from None
    return url


@app.command(help="Run N worker processes that load the producer classes of a directory and produce "
                  "objects for the router, one at a time each (see --prefetch). Files in the directory are "
                  "reloaded when they change. SIGTERM or Ctrl-C stops every worker cleanly.")
def sync_worker(
    router: str = typer.Option(wire.DEFAULT_ROUTER, "--router", envvar="SEASYNC_ROUTER",
                               callback=_check_endpoint, help="ZeroMQ address of the router (sync-router --bind)."),
    workers: int | None = typer.Option(None, "--workers", "-w", envvar="SEASYNC_WORKERS", min=1,
                                show_default="the number of CPUs",
                                help="Number of worker processes; each produces one object at a time."),
    producers: Path = typer.Option(Path("producers"), "--producers", envvar="SEASYNC_PRODUCERS",
                                   help="Directory of producer files: every *.py not starting with '_' is "
                                        "searched for Producer subclasses. It is put on sys.path, so "
                                        "producer files can import their neighbours."),
    production_timeout: float = typer.Option(
        DEFAULT_PRODUCTION_TIMEOUT, "--production-timeout", envvar="SEASYNC_PRODUCTION_TIMEOUT", min=0.0,
        help="Seconds a production (or a reload of the producer files) may run. Past that the worker "
             "process answers the router with a TimeoutError (the router retries with backoff, possibly "
             "on another worker, and tells the watchers), then exits and is replaced: a hung produce() "
             "cannot be interrupted otherwise. 0: no limit."),
    secret: str | None = typer.Option(None, "--secret", envvar=SECRET_ENV, show_default=False,
                                      help=SECRET_HELP + " Passed to the worker processes in their environment."),
    insecure: bool = typer.Option(False, "--insecure", envvar=INSECURE_ENV, help=INSECURE_HELP),
    prefetch: int = typer.Option(
        DEFAULT_PREFETCH, "--prefetch", envvar="SEASYNC_PREFETCH", min=1,
        help="Production orders the router may give each worker process at once. 1 (seapig's rule): a "
             "free worker gets the next order, so a slow production holds up only itself. N > 1: a worker "
             "runs the orders it holds one after the other without a round trip to the router between "
             "them, and answers those finished together (much higher throughput for quick producers), "
             "but an order may wait behind a slow production of the same worker."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every production (debug level)."),
) -> None:
    logs.setup(verbose)
    secret = cluster_secret_or_exit("sync-worker", secret, insecure)
    count = workers or os.cpu_count() or 1
    raise typer.Exit(Pool(count, router, producers.resolve(), verbose, production_timeout, secret,
                          prefetch).run())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
