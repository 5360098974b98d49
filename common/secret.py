"""The cluster secret: which one a process uses, created on first start when none is given.

A default install is closed (DESIGN principle 8): with no ``SEASYNC_SECRET``, the first seasync
process started in a directory (router, front, worker pool, notifier, whichever comes first) creates
a random secret in ``./.seasync-secret`` (mode 0600: only its user can read it), and every other
process started from the same directory reads the same file, so they all derive the same CURVE keys
(``common.wire``) and nothing else on the machine can join the router. ``--insecure`` (or a secret
set explicitly to the empty string) keeps the open, unencrypted links of old.

Creation is race-free: the secret is written complete to a private temporary file, which is then
hard-linked to the final name; ``link`` never replaces an existing file, so when two processes start
together exactly one wins and the other reads the winner's secret. A reader that finds the file
empty (written by hand with ``touch``, or by a tool that creates then writes) retries briefly.

``cluster_secret`` is the one resolution every CLI calls; the result is ``""`` for an open cluster.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import sys
import time
from collections.abc import Mapping
from pathlib import Path

SECRET_ENV = "SEASYNC_SECRET"
"""The secret itself (takes precedence over the file; set but empty: an open cluster)."""
FILE_ENV = "SEASYNC_SECRET_FILE"
"""Where the secret file lives, when not ``./.seasync-secret`` of the working directory."""
INSECURE_ENV = "SEASYNC_INSECURE"
"""``1`` (or ``true``/``yes``): the same as ``--insecure``."""
FILE_NAME = ".seasync-secret"
READ_RETRY = 2.0
"""Seconds a reader waits for a secret file that exists but is still empty."""


class SecretError(Exception):
    """The secret file cannot be created or read, or others may read it: the message says what to do."""


def insecure_from_env(env: Mapping[str, str] = os.environ) -> bool:
    return env.get(INSECURE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def secret_path(directory: str | os.PathLike[str] = ".", env: Mapping[str, str] = os.environ) -> Path:
    """The file ``cluster_secret`` reads or creates."""
    explicit = env.get(FILE_ENV, "")
    return Path(explicit) if explicit else Path(directory) / FILE_NAME


def cluster_secret(explicit: str | None, insecure: bool = False, directory: str | os.PathLike[str] = ".",
                   env: Mapping[str, str] = os.environ) -> str:
    """The cluster secret this process uses; ``""`` means an open cluster (no CURVE).

    In order: ``insecure`` (``--insecure`` or SEASYNC_INSECURE=1) gives ``""``; an ``explicit``
    secret (``--secret``, even empty) is used as given; so is SEASYNC_SECRET when it is set at all
    (empty included: typer/click treat an empty variable as unset, so it is looked at here); otherwise
    the secret file (``secret_path``) is read, or created if missing. Raises SecretError."""
    if insecure or insecure_from_env(env):
        return ""
    if explicit is not None:
        return explicit
    if SECRET_ENV in env:
        return env[SECRET_ENV]
    return read_or_create(secret_path(directory, env))


def cluster_secret_or_exit(program: str, explicit: str | None, insecure: bool = False) -> str:
    """``cluster_secret`` for a command line: a SecretError is printed as ``program: why`` on stderr and the
    process exits with status 2 (every seasync command reports an unusable secret file the same way)."""
    try:
        return cluster_secret(explicit, insecure)
    except SecretError as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def read_or_create(path: Path) -> str:
    """The secret in ``path``, created (random, mode 0600) if the file does not exist yet."""
    deadline = time.monotonic() + READ_RETRY
    while True:
        try:
            value = _read(path)
        except FileNotFoundError:
            value = _create(path)
            if value is None:  # another process created it first: read theirs
                continue
            return value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise SecretError(f"the cluster secret file {path} is empty: delete it (a new secret is then "
                              f"created) or write the secret into it, or set {SECRET_ENV}")
        time.sleep(0.02)


def _read(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SecretError(f"cannot read the cluster secret file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretError(f"the cluster secret file {path} is not a regular file")
        if info.st_uid != os.geteuid():
            raise SecretError(f"the cluster secret file {path} belongs to another user (uid {info.st_uid}): "
                              "another user could have chosen it; delete it, or set "
                              f"{SECRET_ENV} / {FILE_ENV}")
        if info.st_mode & 0o077:
            raise SecretError(f"the cluster secret file {path} may be read by other users "
                              f"(mode {stat.S_IMODE(info.st_mode):04o}): run chmod 600 {path}, or delete "
                              "it (a new secret is then created) and restart every process")
        chunks = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", errors="replace").strip()


def _create(path: Path) -> str | None:
    """Write a new secret to ``path``; None if another process created the file first."""
    value = secrets.token_urlsafe(32)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise SecretError(f"cannot create the cluster secret file {path}: {exc.strerror}; run from a "
                          f"writable directory, set {FILE_ENV}, or set {SECRET_ENV} on every process") from None
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            os.write(fd, (value + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)  # atomic, complete, and never replaces a secret already there
        except FileExistsError:
            return None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise SecretError(f"cannot create the cluster secret file {path}: {exc.strerror}") from None
            # a file system without hard links: O_EXCL on the final name (a reader may see it empty
            # for a moment, which read_or_create waits out)
            return _create_in_place(path, value)
    finally:
        try:
            os.unlink(temporary)
        except OSError:
            pass
    return value


def _create_in_place(path: Path, value: str) -> str | None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    try:
        os.write(fd, (value + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return value


SECRET_HELP = (f"Cluster secret: the ZeroMQ links are CURVE-encrypted and only processes holding the same secret "
               f"join the router. Default: the secret in ./{FILE_NAME} (or {FILE_ENV}), created (random, "
               "mode 0600) by the first process started in this directory; an empty value: an open cluster.")
INSECURE_HELP = ("No cluster secret: open, unencrypted ZeroMQ links that any local process can join (the old "
                 "default). Every process of the cluster must then be started with it.")


def describe(secret: str, directory: str | os.PathLike[str] = ".", env: Mapping[str, str] = os.environ) -> str:
    """Where the secret in use came from, for a startup log line (never the secret itself)."""
    if not secret:
        return "none: open cluster (--insecure), any local process may join"
    if env.get(SECRET_ENV):
        return f"from {SECRET_ENV}"
    return f"from {secret_path(directory, env)}"
