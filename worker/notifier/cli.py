"""``sync-notifier``: publish dependency versions and Seconds:N objects to the router.

Also the schema and trigger tools for PostgreSQL: ``sync-notifier init``, ``install-trigger``,
``remove-trigger``.
"""

from __future__ import annotations

import typer

from common import logs, wire
from common.deps import config
from common.deps.errors import DependencyError, InvalidName, UnknownBackend
from common.deps.names import check_names
from common.secret import INSECURE_ENV, INSECURE_HELP, SECRET_ENV, SECRET_HELP, cluster_secret_or_exit

app = typer.Typer(add_completion=False, rich_markup_mode=None)

DEPS_HELP = ("Where dependency versions live: a SQLite file (sqlite:///path/deps.sqlite3 or a plain path; "
             f"default ./{config.DEFAULT_FILE}) or a PostgreSQL URL (postgresql://user@host/dbname). "
             "Every process (application, workers, notifier) must use the same.")


def _fail(exc: Exception) -> typer.Exit:
    """Print a DependencyError the way every seasync command does; usage errors exit 2, others 1."""
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2 if isinstance(exc, (InvalidName, UnknownBackend)) else 1)


def _target(deps: str | None) -> config.Target:
    try:
        return config.from_env(deps)
    except UnknownBackend as exc:
        raise _fail(exc) from None


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    router: str = typer.Option(wire.DEFAULT_ROUTER, "--router", envvar="SEASYNC_ROUTER",
                               help="ZeroMQ address of the router (sync-router --bind)."),
    deps: str = typer.Option(None, "--deps", envvar=config.ENV_VAR, show_default=False, help=DEPS_HELP),
    name: str = typer.Option(None, "--name", help="Name shown in the router's logs and introspection.",
                             show_default="notifier@HOSTNAME"),
    secret: str | None = typer.Option(None, "--secret", envvar=SECRET_ENV, show_default=False, help=SECRET_HELP),
    insecure: bool = typer.Option(False, "--insecure", envvar=INSECURE_ENV, help=INSECURE_HELP),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="Debug log lines (every upload)."),
) -> None:
    """Run the notifier until SIGINT/SIGTERM (with no command), or run one of the commands below.

    The notifier produces dep:NAME objects (version = the dependency's durable version, data {}) and
    Seconds:N objects (version = floor(now / N)), and uploads each new dependency version as soon as it
    is bumped. It catches up on everything it missed at start and after any lost connection."""
    ctx.obj = deps
    if ctx.invoked_subcommand is not None:
        return
    from worker.notifier.process import Notifier

    logs.setup(verbose)
    target = _target(deps)
    secret = cluster_secret_or_exit("sync-notifier", secret, insecure)
    raise typer.Exit(Notifier(router, target, name, secret).run())


def _connect(ctx: typer.Context, deps: str | None):
    """A PostgreSQL connection with the schema in place (these commands are PostgreSQL only)."""
    from common.deps import postgres

    target = _target(deps if deps is not None else ctx.obj)
    if target.kind != "postgres":
        raise _fail(UnknownBackend(f"this command is for PostgreSQL, and the dependency database is "
                                   f"{target.describe()}: pass --deps postgresql://... or set {config.ENV_VAR}"))
    try:
        conn = postgres.connect(target.where)
        postgres.ensure_schema(conn, target.where)
    except DependencyError as exc:
        raise _fail(exc) from None
    return conn, target


DEPS_OPTION = typer.Option(None, "--deps", envvar=config.ENV_VAR, show_default=False, help=DEPS_HELP)


@app.command("init")
def init(ctx: typer.Context, deps: str = DEPS_OPTION) -> None:
    """Create the seasync tables and functions in a PostgreSQL database (nothing happens if they exist).

    The notifier and bump() create them on first use too; run this when the application connects
    with a role that may not create tables, or to bump from SQL right away."""
    conn, target = _connect(ctx, deps)
    conn.close()
    typer.echo(f"seasync dependency tables ready in {target.describe()}")


@app.command("install-trigger")
def install_trigger(
    ctx: typer.Context,
    table: str = typer.Argument(None, help="The table to watch (TABLE or SCHEMA.TABLE).", show_default=False),
    dependencies: list[str] = typer.Argument(None, metavar="[NAME...]", show_default=False,
                                             help="Dependencies to bump; none: the table's own table:SCHEMA.TABLE."),
    all_tables: bool = typer.Option(False, "--all", help="Every table of --schema (default: every schema "
                                    "but the system's), seasync's own excepted, bumps its table:SCHEMA.TABLE."),
    schemas: list[str] = typer.Option(None, "--schema", help="With --all: only this schema (repeatable).",
                                      show_default=False),
    deps: str = DEPS_OPTION,
) -> None:
    """Bump dependencies whenever a table changes (PostgreSQL).

    Installs a statement-level trigger: every INSERT, UPDATE, DELETE or TRUNCATE on TABLE bumps each
    NAME inside the same transaction, with no change to the application. With no NAME (or --all), the
    trigger bumps the table's own dependency table:SCHEMA.TABLE once per transaction: what producers
    reading through common.deps.tracked() depend on. Installing again replaces the trigger."""
    from common.deps import postgres

    if all_tables == (table is not None):
        raise _fail(InvalidName("name a TABLE, or pass --all (not both)"))
    checked: list[str] = []
    if dependencies:
        try:
            checked = check_names(tuple(dependencies))
        except InvalidName as exc:
            raise _fail(exc) from None
    conn, _ = _connect(ctx, deps)
    try:
        if checked:
            postgres.install_trigger(conn, table, checked)
            typer.echo(f"every change to {table} now bumps {', '.join(checked)}")
            return
        tables = postgres.all_tables(conn, schemas) if all_tables else [table]
        for name in tables:
            typer.echo(f"every change to {name} now bumps {postgres.install_tracking(conn, name)}")
        if not tables:
            typer.echo("no table to track")
    except DependencyError as exc:
        raise _fail(exc) from None
    finally:
        conn.close()


@app.command("remove-trigger")
def remove_trigger(
    ctx: typer.Context,
    table: str = typer.Argument(None, help="The table whose seasync triggers to drop.", show_default=False),
    all_tables: bool = typer.Option(False, "--all", help="Every table's tracking trigger (install-trigger --all)."),
    deps: str = DEPS_OPTION,
) -> None:
    """Remove the triggers install-trigger put on a table (PostgreSQL)."""
    from common.deps import postgres

    if all_tables == (table is not None):
        raise _fail(InvalidName("name a TABLE, or pass --all (not both)"))
    conn, _ = _connect(ctx, deps)
    try:
        for name in postgres.all_tables(conn) if all_tables else [table]:
            removed = [t for t in ("seasync_bump", postgres.TRACK_TRIGGER)
                       if postgres.remove_trigger(conn, name, t)]
            typer.echo(f"removed the seasync trigger of {name}" if removed else f"{name} had no seasync trigger")
    except DependencyError as exc:
        raise _fail(exc) from None
    finally:
        conn.close()


def main() -> None:
    app(prog_name="sync-notifier")


if __name__ == "__main__":
    main()
