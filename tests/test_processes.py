"""Stopping a server stops everything it started, as Airflow's task processes show."""

import sys

from musicvae.local.servers.processes import Processes, pid_alive, wait

# A server that starts a child in a process group of its own, as Airflow's task supervisor
# does, writes the child's pid, and waits.
SERVER = """
import os, sys, time
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    time.sleep(600)
    os._exit(0)
open(sys.argv[1], "w").write(str(pid))
time.sleep(600)
"""


def test_stop_ends_a_child_in_a_process_group_of_its_own(tmp_path):
    (tmp_path / "logs").mkdir()
    processes = Processes(tmp_path)
    child_pid = tmp_path / "child.pid"
    processes.spawn("server", [sys.executable, "-c", SERVER, str(child_pid)], {})
    wait(lambda: child_pid.read_text(), "the server's child", timeout=30)
    child = int(child_pid.read_text())
    server = int(processes.pid_file("server").read_text())
    assert pid_alive(child) and pid_alive(server)

    processes.stop("server", timeout=5)

    assert not pid_alive(server)
    assert not pid_alive(child)
    assert not processes.running("server")
