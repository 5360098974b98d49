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
    verbose: int = typer.Option(0, "--verbose", "-v", count=True,
                                help="Debug log lines."),
) -> None:
    """Run the router until SIGINT/SIGTERM."""
    from router.router import serve

    logs.setup(verbose)
    serve(bind, retain=retain)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
