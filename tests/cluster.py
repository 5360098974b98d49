"""Start real seasync processes on free loopback ports, for integration tests.

Every process is started as ``python -m <module>`` with the test interpreter, so the tests
need nothing on PATH. Output goes to a log file per process; a failing test prints it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def repo_secret() -> str:
    """The cluster secret of the processes these helpers start (same working directory, same
    environment): what an in-process stand-in for the router or a peer must use to talk to them
    ("" when the environment says --insecure)."""
    from common.secret import cluster_secret

    return cluster_secret(None, directory=REPO)


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on port {port} after {timeout} s") from None
            time.sleep(0.05)


class Proc:
    """One child process with its log; stopped with SIGTERM like honcho does."""

    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.args = args
        self.log_path = Path(tempfile.mkstemp(prefix=f"seasync-{name}-", suffix=".log")[1])
        self._log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.setdefault("PYTHONPATH", str(REPO))
        if env:
            full_env.update(env)
        self.popen = subprocess.Popen(
            [sys.executable, *args], stdout=self._log, stderr=subprocess.STDOUT,
            env=full_env, cwd=str(cwd or REPO), start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal to the process (default SIGKILL: a crash, no cleanup)."""
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL the whole process group; returns the exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        else:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()
        return self.popen.returncode


class Cluster:
    """A router, a front and any number of worker pools on free ports."""

    def __init__(self) -> None:
        self.router_port = free_port()
        self.front_port = free_port()
        self.procs: list[Proc] = []
        self.router: Proc | None = None
        self.front: Proc | None = None

    @property
    def router_url(self) -> str:
        return f"tcp://127.0.0.1:{self.router_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.front_port}"

    def _start(self, name: str, args: list[str], **kw) -> Proc:
        proc = Proc(name, args, **kw)
        self.procs.append(proc)
        return proc

    def start_router(self, *extra: str, env: dict[str, str] | None = None) -> Proc:
        self.router = self._start("router", ["-m", "router.cli", "--bind", self.router_url, *extra], env=env)
        wait_port(self.router_port)
        return self.router

    def start_front(self, *extra: str) -> Proc:
        self.front = self._start("front", ["-m", "router.front.cli", "--router", self.router_url,
                                           "--host", "127.0.0.1", "--port", str(self.front_port),
                                           *extra])
        wait_port(self.front_port)
        return self.front

    def start_workers(self, producers: Path | str, workers: int = 1, *extra: str) -> Proc:
        """A `sync-worker` pool loading producer classes from the given directory."""
        return self._start("worker", ["-m", "worker.cli", "--router", self.router_url,
                                      "--workers", str(workers), "--producers", str(producers),
                                      *extra])

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} ({' '.join(p.args)})\n{p.output()}" for p in self.procs)
