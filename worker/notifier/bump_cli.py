"""``sync-bump NAME...``: bump dependencies from a shell, a cron job or a deploy script."""

from __future__ import annotations

import typer

from common.deps import api, config
from common.deps.errors import DependencyError
from worker.notifier.cli import DEPS_HELP, _fail

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def sync_bump(
    dependencies: list[str] = typer.Argument(..., metavar="NAME...", help="Dependencies to bump."),
    deps: str = typer.Option(None, "--deps", envvar=config.ENV_VAR, show_default=False, help=DEPS_HELP),
    show: bool = typer.Option(False, "--show", help="Print the current versions; bump nothing."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
) -> None:
    """Give each NAME a new version, so that every object built from it is produced again.

    Prints one line per dependency: its object id and new version. Exits 2 for a bad name or
    --deps value, 1 if the database cannot be reached."""
    try:
        config.from_env(deps)
        found = (api.versions if show else api.bump)(*dependencies, url=deps)
    except DependencyError as exc:
        raise _fail(exc) from None
    if not quiet:
        for object_id, version in found.items():
            typer.echo(f"{object_id} {version}")


def main() -> None:
    app(prog_name="sync-bump")


if __name__ == "__main__":
    main()
