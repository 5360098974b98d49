"""`sync-router`: the process that owns every object, version, dependency and diff."""

from __future__ import annotations

import logging
from functools import partial

import typer

from common import logs, wire
from common.secret import INSECURE_ENV, INSECURE_HELP, SECRET_ENV, SECRET_HELP, cluster_secret_or_exit, describe
from router.limits import Limits

_L = Limits()  # the defaults of the budget options below (router/limits.py documents each)

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
    linger: float = typer.Option(
        0.0, "--linger", envvar="SEASYNC_LINGER", min=0.0,
        help="Seconds an object is kept, current, after its last watcher leaves (0: dropped at once, as "
             "seapig): a page reload or a reconnect storm then costs no production."),
    linger_bytes: int = typer.Option(64 << 20, "--linger-bytes", envvar="SEASYNC_LINGER_BYTES", min=0,
                                     help="Bytes of lingering values kept in all (the oldest dropped first)."),
    skip_unchanged: bool = typer.Option(
        False, "--skip-unchanged", envvar="SEASYNC_SKIP_UNCHANGED",
        help="Do not send consumers a production whose data equals the data held (only the version moved); "
             "off: they get seapig's 'patch: []' with the new version. Counted either way."),
    max_registrations: int = typer.Option(_L.max_registrations, "--max-registrations", envvar="SEASYNC_MAX_REGISTRATIONS", min=1,
                                          help="Patterns one session may register (consumers and producers)."),
    max_object: int = typer.Option(_L.max_object, "--max-object", envvar="SEASYNC_MAX_OBJECT", min=2,
                                   help="Bytes an object's value may encode to, uploaded whole or built by a patch "
                                        "(a patch whose result would be larger is refused before it is built)."),
    max_version: int = typer.Option(_L.max_version, "--max-version", envvar="SEASYNC_MAX_VERSION", min=16,
                                    help="Bytes one version may encode to."),
    max_dependencies: int = typer.Option(_L.max_dependencies, "--max-dependencies", envvar="SEASYNC_MAX_DEPENDENCIES",
                                         min=1, help="Keys (dependencies) of one dependency-hash version."),
    max_session_versions: int = typer.Option(
        _L.max_session_versions, "--max-session-versions", envvar="SEASYNC_MAX_SESSION_VERSIONS", min=0,
        help="Bytes of the list and hash versions one session registers with version-known, summed."),
    max_session_pattern_chars: int = typer.Option(
        _L.max_session_pattern_chars, "--max-session-pattern-chars", envvar="SEASYNC_MAX_SESSION_PATTERN_CHARS", min=1,
        help="Total length of the patterns one session registers."),
    max_stars: int = typer.Option(_L.max_stars, "--max-stars", envvar="SEASYNC_MAX_STARS", min=1,
                                  help="'*' in one pattern."),
    max_patterns: int = typer.Option(_L.max_patterns, "--max-patterns", envvar="SEASYNC_MAX_PATTERNS", min=1,
                                     help="Distinct patterns registered by all sessions together."),
    max_wildcards: int = typer.Option(_L.max_wildcards, "--max-wildcards", envvar="SEASYNC_MAX_WILDCARDS", min=1,
                                      help="Distinct wildcard patterns registered by all sessions together."),
    max_pattern_chars: int = typer.Option(_L.max_pattern_chars, "--max-pattern-chars",
                                          envvar="SEASYNC_MAX_PATTERN_CHARS", min=1,
                                          help="Total length of the distinct patterns of all sessions."),
    max_session_objects: int = typer.Option(
        _L.max_session_objects, "--max-session-objects", envvar="SEASYNC_MAX_SESSION_OBJECTS", min=1,
        help="Objects one session's messages may cause to exist (registrations, uploads, dependencies)."),
    max_objects: int = typer.Option(_L.max_objects, "--max-objects", envvar="SEASYNC_MAX_OBJECTS", min=1,
                                    help="Objects alive in all."),
    max_sessions_per_peer: int = typer.Option(
        _L.max_sessions_per_peer, "--max-sessions-per-peer", envvar="SEASYNC_MAX_SESSIONS_PER_PEER", min=1,
        help="Sessions one front or worker process may open; the ones past it are dropped (1008)."),
    order_timeout: float = typer.Option(
        _L.order_timeout, "--order-timeout", envvar="SEASYNC_ORDER_TIMEOUT", min=0.0,
        help="Seconds a producer may hold a production order before it is taken back, counted as failed and "
             "given to another producer (0: never)."),
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
    secret = cluster_secret_or_exit("sync-router", secret, insecure)
    logging.getLogger("seasync.router").info("= cluster secret: %s", describe(secret))
    limits = Limits(max_object=max_object, max_version=max_version, max_dependencies=max_dependencies,
                    max_session_versions=max_session_versions, max_registrations=max_registrations,
                    max_session_pattern_chars=max_session_pattern_chars, max_stars=max_stars,
                    max_patterns=max_patterns, max_wildcards=max_wildcards, max_pattern_chars=max_pattern_chars,
                    max_session_objects=max_session_objects, max_objects=max_objects,
                    max_sessions_per_peer=max_sessions_per_peer, order_timeout=order_timeout)
    hook = None
    if auth:
        try:
            hook = load_hook(auth)
        except (ImportError, AttributeError, ValueError) as exc:
            typer.echo(f"sync-router: cannot load --auth hook {auth!r}: {exc}", err=True)
            raise typer.Exit(2) from None
    make_store = partial(ObjectStore, retain=retain, retain_bytes=retain_bytes, min_interval=min_interval,
                         limits=limits, authenticate=hook, linger=linger, linger_bytes=linger_bytes,
                         skip_unchanged=skip_unchanged)
    serve(bind, make_store, secret=secret, metrics_port=metrics_port, metrics_host=metrics_host)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
