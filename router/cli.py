"""`sync-router`: the process that owns every object, version, dependency and diff."""

from __future__ import annotations

import typer

from common import logs, wire

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def run(
    bind: str = typer.Option(wire.DEFAULT_ROUTER, "--bind", envvar=["SEASYNC_BIND", "SEASYNC_ROUTER"],
                             help="ZeroMQ address fronts and workers connect to (tcp://host:port or ipc://path)."),
    retain: int = typer.Option(2, "--retain", envvar="SEASYNC_RETAIN", min=1,
                               help="Data versions kept per object; a client holding one of them gets a patch."),
    min_interval: float = typer.Option(
        0.0, "--min-interval", envvar="SEASYNC_MIN_INTERVAL", min=0.0,
        help="Seconds between two productions of the same object. When set, an object has at most one "
             "production in flight and bumps arriving meanwhile are coalesced (protects against hot objects)."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True,
                                help="Debug log lines."),
) -> None:
    """Run the router until SIGINT/SIGTERM."""
    from router.router import serve

    logs.setup(verbose)
    serve(bind, retain=retain, min_interval=min_interval)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
