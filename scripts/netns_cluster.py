"""A seasync cluster spread over "hosts" made of Linux network namespaces, for tests and demos.

Why: every other test runs on loopback, where a link never fails the way a network does. Here each
host is a network namespace with one veth whose other end is plugged into a bridge that lives in a
namespace of its own (the "switch"). Nothing is ever created in the namespace this script runs in,
so traffic between the hosts cannot leave them, and the addresses (10.77.0.0/24) exist only there.
``link_down(host)`` sets the switch side of a host's veth down: its packets vanish without a FIN or
a RST, as when a cable or a switch port dies, and ``link_up`` heals it.

Processes are started with ``ip netns exec HOST python -m ...`` (no PID or mount isolation that
matters: the hosts share this machine's filesystem, so SQLite dependencies and the producer files
are seen by all) with ``SEASYNC_SECRET`` set to a secret of the run.

Teardown is guaranteed three ways: the ``with`` block, an ``atexit`` hook and SIGTERM/SIGINT/SIGHUP
handlers; names carry the creating pid, so a later run also removes what a killed run (SIGKILL)
left behind (``sweep_stale``). Needs root and iproute2; ``unavailable()`` says why not, for skips.

Usage as a tool: ``sudo python scripts/netns_cluster.py [--producers DIR]`` builds the hosts, starts
a router, a front, two worker pools and a notifier, prints how to reach them, and tears all down on
Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
PREFIX = "ssn"
"""Every namespace of a run is named ``ssn<pid>x<n>-<host>``: the pid says whether its run is alive."""
SUBNET = "10.77.0"
HOSTS = {"router": 1, "work1": 2, "work2": 3, "front": 4, "client": 5}
"""The default hosts and the last byte of their address."""
ROUTER_PORT = 7100
FRONT_PORT = 7101
CLONE_NEWNET = 0x40000000
_NAME = re.compile(rf"^{PREFIX}(\d+)x\d+-\w+$")
_runs = itertools.count()
_live: list[NetnsCluster] = []
_handlers_installed = False
T = TypeVar("T")


def unavailable() -> str | None:
    """Why network namespaces cannot be made here (a reason for pytest.skip), or None if they can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed (scripts/test.sh installs it with apt-get)"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"{PREFIX}{os.getpid()}x999-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"'ip netns add' failed: {made.stderr.strip() or made.returncode}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def namespaces() -> list[str]:
    """Names of every network namespace (``ip netns list``)."""
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_namespace(name: str) -> None:
    """Kill what runs in it (processes of ours: only our runs start anything there), then delete it.
    Its veth ends go with it (a veth dies with either end's namespace)."""
    for line in _ip("netns", "pids", name, check=False).stdout.split():
        try:
            os.kill(int(line), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    _ip("netns", "del", name, check=False)


def sweep_stale() -> list[str]:
    """Remove the namespaces left by runs whose process is gone (killed with SIGKILL: no hook ran)."""
    removed = []
    for name in namespaces():
        m = _NAME.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            _remove_namespace(name)
            removed.append(name)
    return removed


def _libc_setns() -> Callable[[int, int], int]:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc.setns


@contextmanager
def entered(namespace: str) -> Iterator[None]:
    """The calling THREAD in ``namespace`` for the block (Linux keeps a network namespace per thread):
    sockets created meanwhile belong to that host and stay there after the block."""
    setns = _libc_setns()
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace}")
        try:
            yield
        finally:
            if setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(target)
        os.close(own)


class HostThread:
    """An asyncio loop in a thread that lives in one host's namespace: run clients "on that host"
    from the test process (``run(coro)`` blocks; ``submit`` returns a concurrent Future)."""

    def __init__(self, namespace: str) -> None:
        import asyncio

        self._asyncio = asyncio
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._error: BaseException | None = None

        def main() -> None:
            try:
                setns = _libc_setns()
                fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
                try:
                    if setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns into {namespace}")
                finally:
                    os.close(fd)
            except BaseException as exc:  # noqa: BLE001 - reported to the creator
                self._error = exc
                ready.set()
                return
            asyncio.set_event_loop(self.loop)
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, name=f"host-{namespace}", daemon=True)
        self.thread.start()
        ready.wait()
        if self._error is not None:
            raise self._error

    def submit(self, coro: Any) -> Any:
        return self._asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        """Cancel what still runs on the loop (its websockets close), wait for it, then stop."""
        asyncio = self._asyncio

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=5) if tasks else None

        if self.loop.is_running():
            try:
                self.run(cancel_all(), timeout=10)
            except Exception:  # noqa: BLE001 - teardown goes on
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


class HostProc:
    """One process started on a host, its output in a log file; stopped like honcho does (SIGTERM,
    then SIGKILL of its process group)."""

    def __init__(self, name: str, namespace: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.namespace = namespace
        self.args = args
        self.log_path = Path(tempfile.mkstemp(prefix=f"seasync-{name}-", suffix=".log")[1])
        self._log = open(self.log_path, "wb")
        # `ip netns exec` enters the namespace and execs: the pid is the Python process's own
        self.popen = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, *args],
                                      stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(cwd),
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        """Block until ``text`` is in the log (AssertionError with the log after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert time.monotonic() < deadline, f"{text!r} not in the log of {self.name}:\n{self.output()}"
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()
        self._log.close()
        return self.popen.returncode


class NetnsCluster:
    """Hosts (namespaces) on one switch, and the seasync processes started on them.

    ``with NetnsCluster() as net: net.start_router(); ...``; everything is removed on exit, on
    SIGTERM/SIGINT/SIGHUP and at interpreter exit, whichever comes first."""

    def __init__(self, hosts: dict[str, int] | None = None, secret: str | None = None,
                 workdir: Path | None = None) -> None:
        self.run = f"{PREFIX}{os.getpid()}x{next(_runs)}"
        self.hosts = dict(hosts or HOSTS)
        self.secret = secret if secret is not None else secrets.token_urlsafe(32)
        self._tmp = None if workdir is not None else tempfile.TemporaryDirectory(prefix="seasync-netns-")
        self.workdir = workdir if workdir is not None else Path(self._tmp.name)
        self.procs: list[HostProc] = []
        self.threads: list[HostThread] = []
        self.made: list[str] = []
        self._closed = False

    # ---- the network -------------------------------------------------------------------------
    def ns(self, host: str) -> str:
        return f"{self.run}-{host}"

    @property
    def switch(self) -> str:
        return f"{self.run}-sw"

    def addr(self, host: str) -> str:
        return f"{SUBNET}.{self.hosts[host]}"

    def port_of(self, host: str) -> str:
        """The switch-side veth of a host (in the switch namespace)."""
        return f"p-{host}"[:15]

    def __enter__(self) -> NetnsCluster:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def up(self) -> None:
        """Create the switch, the hosts and their links (veth pairs created directly inside the
        namespaces: never an interface in the caller's)."""
        _install_handlers()
        sweep_stale()
        _live.append(self)
        try:
            self._make(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            _ip("-n", self.switch, "link", "set", "lo", "up")
            for host in self.hosts:
                ns = self._make(self.ns(host))
                _ip("-n", self.switch, "link", "add", self.port_of(host), "type", "veth",
                    "peer", "name", "eth0", "netns", ns)
                _ip("-n", self.switch, "link", "set", self.port_of(host), "master", "br0")
                _ip("-n", self.switch, "link", "set", self.port_of(host), "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "addr", "add", f"{self.addr(host)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
        except BaseException:
            self.close()
            raise

    def _make(self, name: str) -> str:
        _ip("netns", "add", name)
        self.made.append(name)
        return name

    def link_down(self, host: str) -> None:
        """Cut the host off the switch: its packets (and those sent to it) vanish, no FIN, no RST."""
        _ip("-n", self.switch, "link", "set", self.port_of(host), "down")

    def link_up(self, host: str) -> None:
        _ip("-n", self.switch, "link", "set", self.port_of(host), "up")

    def close(self) -> None:
        """Stop every process, then remove every namespace (and with them the veths). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for thread in self.threads:
            thread.close()
        for proc in reversed(self.procs):
            try:
                proc.stop(timeout=5.0)
            except Exception:  # noqa: BLE001 - teardown goes on whatever happens
                pass
        for name in reversed(self.made):
            _remove_namespace(name)
        if self in _live:
            _live.remove(self)
        if self._tmp is not None:
            self._tmp.cleanup()

    def leftovers(self) -> list[str]:
        """Namespaces of this run that still exist (for tests of the teardown)."""
        return [n for n in namespaces() if n.startswith(self.run + "-")]

    # ---- processes ---------------------------------------------------------------------------
    def env(self, **extra: str | None) -> dict[str, str]:
        """The environment of a process of this cluster: the run's secret, this repository first on
        PYTHONPATH. A value None removes the variable (e.g. SEASYNC_SECRET=None: no secret given)."""
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = str(REPO)
        env["SEASYNC_SECRET"] = self.secret
        for name in ("SEASYNC_INSECURE", "SEASYNC_SECRET_FILE"):
            env.pop(name, None)
        for name, value in extra.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def start(self, name: str, host: str, args: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> HostProc:
        """``python ARGS`` on ``host``; ``env`` defaults to ``self.env()``, ``cwd`` to the run's directory."""
        proc = HostProc(name, self.ns(host), args, env if env is not None else self.env(),
                        cwd or self.workdir)
        self.procs.append(proc)
        return proc

    @property
    def router_url(self) -> str:
        return f"tcp://{self.addr('router')}:{ROUTER_PORT}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.addr('front')}:{FRONT_PORT}"

    def start_router(self, *extra: str, host: str = "router") -> HostProc:
        proc = self.start("router", host, ["-m", "router.cli", "--bind", self.router_url, *extra])
        self.wait_port(host, self.addr(host), ROUTER_PORT)
        return proc

    def start_front(self, *extra: str, host: str = "front") -> HostProc:
        proc = self.start("front", host, ["-m", "router.front_cli", "--router", self.router_url,
                                          "--host", self.addr(host), "--port", str(FRONT_PORT), *extra])
        self.wait_port(host, self.addr(host), FRONT_PORT)
        return proc

    def start_workers(self, host: str, producers: Path, workers: int = 1, *extra: str,
                      env: dict[str, str] | None = None, cwd: Path | None = None) -> HostProc:
        return self.start(f"worker-{host}", host, ["-m", "worker.cli", "--router", self.router_url,
                                                   "--workers", str(workers), "--producers", str(producers),
                                                   *extra], env=env, cwd=cwd)

    def start_notifier(self, host: str, deps: str, *extra: str) -> HostProc:
        return self.start(f"notifier-{host}", host, ["-m", "worker.notifier.cli", "--router", self.router_url,
                                                     "--deps", deps, *extra])

    def host_thread(self, host: str) -> HostThread:
        thread = HostThread(self.ns(host))
        self.threads.append(thread)
        return thread

    def call_in(self, host: str, fn: Callable[[], T]) -> T:
        """``fn()`` run by a short-lived thread inside ``host`` (the caller's own namespace is untouched)."""
        box: dict[str, Any] = {}

        def main() -> None:
            try:
                with entered(self.ns(host)):
                    box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                box["error"] = exc

        t = threading.Thread(target=main)
        t.start()
        t.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    def wait_port(self, host: str, address: str, port: int, timeout: float = 60.0) -> None:
        """Block until something on ``host`` accepts TCP connections on address:port."""
        def probe() -> None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with socket.create_connection((address, port), timeout=0.5):
                        return
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"nothing listens on {address}:{port} ({host}) after {timeout} s") from None
                    time.sleep(0.05)
        self.call_in(host, probe)

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} on {p.namespace} ({' '.join(p.args)})\n{p.output()}" for p in self.procs)


def _close_all() -> None:
    for cluster in list(_live):  # close() removes it from _live
        cluster.close()


def _on_signal(signum: int, frame: object) -> None:
    _close_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    """atexit and SIGTERM/SIGHUP teardown, once; SIGINT is left to Python (KeyboardInterrupt unwinds
    the ``with`` blocks, and pytest's own handling of Ctrl-C runs the fixtures' finalizers)."""
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_close_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--producers", type=Path, default=REPO / "producers",
                        help="producer directory of both worker pools")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per worker host")
    args = parser.parse_args(argv)
    reason = unavailable()
    if reason:
        print(f"cannot build the hosts: {reason}", file=sys.stderr)
        return 2
    with NetnsCluster() as net:
        deps = str(net.workdir / "deps.sqlite3")
        net.start_router()
        net.start_front()
        for host in ("work1", "work2"):
            net.start_workers(host, args.producers.resolve(), args.workers)
        net.start_notifier("work2", deps)
        print(f"hosts: {', '.join(f'{h} {net.ns(h)} {net.addr(h)}' for h in net.hosts)}")
        print(f"router {net.router_url}; front {net.ws_url} (reach it from the client host: "
              f"ip netns exec {net.ns('client')} ...); cut a link: ip -n {net.switch} link set p-HOST down")
        print(f"logs: {', '.join(str(p.log_path) for p in net.procs)}; Ctrl-C to tear down")
        try:
            while all(p.alive() for p in net.procs):
                time.sleep(1)
            print("a process exited:\n" + net.logs(), file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
