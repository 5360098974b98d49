"""``sync-observer`` (and ``python -m scripts.observer``): its command line."""

from __future__ import annotations

import logging

import typer

from common import logs
from scripts.observer.app import DEFAULT_URL, ObserverApp

cli = typer.Typer(add_completion=False)


@cli.command()
def observe(
    url: str = typer.Option(DEFAULT_URL, "--url", envvar="SEASYNC_URL",
                            help="Websocket URL of any seasync front (or seapig server)."),
    internal: bool = typer.Option(False, "--internal", help="Also list the router's own SeapigServer::* objects."),
    log_file: str = typer.Option("", "--log-file", help="Write the client's log lines to this file."),
) -> None:
    """Watch a seasync cluster live: objects, workers, connections, rates, and any object's JSON."""
    if log_file:
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter(logs.FORMAT, datefmt=logs.DATEFMT))
        logging.getLogger("seasync").addHandler(handler)
        logging.getLogger("seasync").setLevel(logging.INFO)
    code = ObserverApp(url, show_internal=internal).run()
    raise typer.Exit(code or 0)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
