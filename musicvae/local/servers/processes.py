"""Process and port plumbing the servers share: free loopback ports, waiting for readiness,
and the pid files under the stack's folder of the processes it spawns and stops."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

from musicvae.core.errors import StackError

log = logging.getLogger("musicvae.local.stack")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(taken: set[int]) -> int:
    # SeaweedFS also binds port + 10000 for gRPC, so both must be free.
    for _ in range(500):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 55000 and not taken & {port, port + 10000} and port_free(port + 10000):
            return port
    raise StackError("could not find a free loopback port pair (port and port+10000)")


def assign_ports(ports: dict[str, int], names, owned) -> None:
    """Give each of `names` a port in `ports`: its old one while that is free or `owned(name)`
    (its server runs), else a new free one."""
    taken: set[int] = set()
    for name in names:
        port = ports.get(name)
        if port is None or (not owned(name) and not port_free(port)):
            port = free_port(taken | set(ports.values()))
            ports[name] = port
        taken.add(port)


def wait(check, what: str, timeout: float, log_file: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - any failure here just means "not ready yet"
            pass
        time.sleep(0.5)
    hint = f"; see {log_file}" if log_file else ""
    raise StackError(f"{what} did not become ready within {timeout:.0f} s{hint}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); it is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class Processes:
    """The processes spawned under `root`: a pid file each, a log each under `root/logs`."""

    def __init__(self, root: Path):
        self.root = root

    def pid_file(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def running(self, name: str) -> bool:
        pid_file = self.pid_file(name)
        return pid_file.exists() and pid_alive(int(pid_file.read_text()))

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        logfile = open(self.root / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - child keeps it
        # A new session detaches the server from the caller's terminal and lets down() stop
        # the whole process group (api-server and scheduler fork workers).
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.root,
        )
        self.pid_file(name).write_text(str(proc.pid))
        log.info("started %s (pid %s)", name, proc.pid)

    def stop(self, name: str, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL, to the server's process group and to every process it had
        started, each step waiting up to `timeout` for them to end.

        Its processes are listed before any signal: once the server is gone they are init's and
        cannot be found. Airflow's task supervisor moves each task into a process group of its
        own, which killpg does not reach: a task still running when its Celery worker stopped
        lived on (a training task, at a full core for 40 minutes after its stack went down)."""
        pid_file = self.pid_file(name)
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text())
        started = _descendants(pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not pid_alive(pid) and not started:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            for p in started:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.send_signal(sig)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.2)
            _, started = psutil.wait_procs(started, timeout=max(0.0, deadline - time.monotonic()))
        pid_file.unlink(missing_ok=True)
        log.info("stopped %s", name)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
