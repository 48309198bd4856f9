"""services.supervisor on real processes: spawn, pid files that survive pid reuse, group stops, /proc sockets."""

from __future__ import annotations

import os
import socket
import sys
import time

from services import supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
#: A parent that ignores SIGTERM with a child in its group: only SIGKILL ends the group.
STUBBORN = [sys.executable, "-c",
            "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)']); time.sleep(120)"]


def test_a_spawned_process_leads_its_own_group_and_its_pid_file_names_it(tmp_path):
    pid = supervisor.spawn(SLEEPER, tmp_path / "p.pid", tmp_path / "p.log", header="starting p")
    try:
        assert os.getpgid(pid) == pid
        assert supervisor.running_pid(tmp_path / "p.pid") == pid
        assert (tmp_path / "p.pid").read_text().split() == [str(pid), supervisor.start_time(pid)]
        assert "starting p" in (tmp_path / "p.log").read_text()
        assert "time.sleep(120)" in (tmp_path / "p.cmd").read_text()
    finally:
        assert supervisor.stop_groups({"p": pid}, 10) == []
    assert not supervisor.alive(pid)
    assert supervisor.running_pid(tmp_path / "p.pid") is None
    assert not (tmp_path / "p.pid").exists(), "a stale pid file is removed"


def test_a_recycled_pid_is_not_taken_for_ours(tmp_path):
    # This test's own process is alive, but it is not the process the file recorded.
    (tmp_path / "old.pid").write_text(f"{os.getpid()} 1\n")
    assert supervisor.running_pid(tmp_path / "old.pid") is None
    assert not (tmp_path / "old.pid").exists()


def test_a_group_that_ignores_sigterm_is_killed_whole(tmp_path):
    pid = supervisor.spawn(STUBBORN, tmp_path / "s.pid", tmp_path / "s.log")
    for _ in range(100):
        if len(supervisor.group_members(pid)) == 2:
            break
        time.sleep(0.1)
    assert len(supervisor.group_members(pid)) == 2
    assert supervisor.stop_groups({"s": pid}, 1.0) == []
    assert supervisor.group_members(pid) == []


def test_listening_sockets_and_the_port_owner_come_from_proc():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert ("127.0.0.1", port) in supervisor.listening_sockets(os.getpid())
        assert supervisor.port_owner(port).startswith(f"pid {os.getpid()}:")
