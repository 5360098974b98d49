"""`sync-router`: the process that owns every object, version, dependency and diff."""

from __future__ import annotations

import logging

import typer

from common import logs, wire
from common.secret import INSECURE_ENV, INSECURE_HELP, SECRET_ENV, SECRET_HELP, SecretError, cluster_secret, describe

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def run(
    bind: str = typer.Option(wire.DEFAULT_ROUTER, "--bind", envvar=["SEASYNC_BIND", "SEASYNC_ROUTER"],
                             help="ZeroMQ address fronts and workers connect to (tcp://host:port or ipc://path)."),
    retain: int = typer.Option(8, "--retain", envvar="SEASYNC_RETAIN", min=2,
                               help="Data versions kept per object: a client up to N-1 versions behind resyncs "
                                    "with one patch instead of the full value."),
    retain_bytes: int = typer.Option(4 << 20, "--retain-bytes", envvar="SEASYNC_RETAIN_BYTES", min=0,
                                     help="Bytes of versions older than the previous one kept per object."),
    min_interval: float = typer.Option(
        0.0, "--min-interval", envvar="SEASYNC_MIN_INTERVAL", min=0.0,
        help="Seconds between two productions of the same object. When set, an object has at most one "
             "production in flight and bumps arriving meanwhile are coalesced (protects against hot objects)."),
    max_registrations: int = typer.Option(10_000, "--max-registrations", envvar="SEASYNC_MAX_REGISTRATIONS", min=1,
                                          help="Patterns one session may register (consumers and producers)."),
    auth: str = typer.Option("", "--auth", envvar="SEASYNC_AUTH",
                             help="Access hook 'module:callable': called with a client's options (e.g. a 'token'), "
                                  "returns an object with may_consume(pattern) and may_produce(pattern), or None to "
                                  "refuse. Default: every client may do everything."),
    secret: str | None = typer.Option(None, "--secret", envvar=SECRET_ENV, show_default=False, help=SECRET_HELP),
    insecure: bool = typer.Option(False, "--insecure", envvar=INSECURE_ENV, help=INSECURE_HELP),
    metrics_port: int = typer.Option(0, "--metrics-port", envvar="SEASYNC_METRICS_PORT", min=0,
                                     help="Serve Prometheus metrics on http://HOST:PORT/metrics (0: off)."),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", envvar="SEASYNC_METRICS_HOST",
                                     help="Address the metrics endpoint listens on."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="Debug log lines."),
) -> None:
    """Run the router until SIGINT/SIGTERM."""
    from router.auth import load_hook
    from router.router import serve
    from router.store import ObjectStore

    logs.setup(verbose)
    try:
        secret = cluster_secret(secret, insecure)
    except SecretError as exc:
        typer.echo(f"sync-router: {exc}", err=True)
        raise typer.Exit(2)
    logging.getLogger("seasync.router").info("cluster secret: %s", describe(secret))
    store = ObjectStore(retain=retain, retain_bytes=retain_bytes, min_interval=min_interval,
                        max_registrations=max_registrations)
    if auth:
        try:
            store.authenticate = load_hook(auth)
        except (ImportError, AttributeError, ValueError) as exc:
            typer.echo(f"sync-router: cannot load --auth hook {auth!r}: {exc}", err=True)
            raise typer.Exit(2)
    serve(bind, store, secret=secret, metrics_port=metrics_port, metrics_host=metrics_host)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
