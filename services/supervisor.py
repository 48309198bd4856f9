"""The one process supervisor of the lab's local processes, and what /proc says about them.

``services.runner`` (the Kafka and Cassandra JVMs), ``services.lab`` (Spark, MLflow, Airflow,
Jupyter) and ``services.docker_engine`` (dockerd) start, find and stop their processes here:

* :func:`spawn` starts a command detached, as the leader of its own session and process group,
  its output appended to a log file, and writes a pid file of ``pid start-time``;
* :func:`running_pid` reads a pid file back and answers only for the very process it names:
  the start time (field 22 of ``/proc/<pid>/stat``) must match, so a recycled pid is never taken
  for ours, and a zombie counts as gone; a stale file is removed;
* :func:`stop_groups` sends SIGTERM to each process group, waits until the group is empty and
  sends SIGKILL to what is left.

The /proc readers (:func:`listening_table`, :func:`listening_sockets`, :func:`group_listeners`,
:func:`port_owner`) tell which process listens on which port without ``ss`` or ``lsof``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("services.supervisor")

#: SIGKILL's grace: how long a killed group may take to disappear.
KILL_WAIT = 15.0

#: Popen objects of the processes this Python process started, polled so that they never linger
#: as zombies (a zombie still answers kill(pid, 0)) and so that their exit code can be reported.
_children: dict[int, subprocess.Popen] = {}


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 on), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks after boot; None when it is gone or a zombie."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return fields[19]  # field 22 of stat


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, or a child of ours that exited, does not)."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        return False  # reaped; kept in _children so that its exit code can be reported
    return start_time(pid) is not None


def exit_code(pid: int) -> int | None:
    """The exit code of a child this process started and that has exited, else None."""
    child = _children.get(pid)
    return None if child is None else child.poll()


def spawn(cmd: list[str], pid_path: Path, log_path: Path, *, cwd: Path | None = None,
          env: dict[str, str] | None = None, header: str | None = None, keep_previous_log: bool = False) -> int:
    """Start ``cmd`` detached (own session and process group); its pid file and log; returns the pid.

    The command line is written beside the log (``<name>.cmd``). The log is appended to, after
    ``header`` when given; with ``keep_previous_log`` the last run's log moves to ``<log>.1`` first.
    """
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if keep_previous_log and log_path.exists():
        log_path.replace(log_path.with_name(log_path.name + ".1"))
    log_path.with_suffix(".cmd").write_text(shlex.join(cmd) + "\n")
    with open(log_path, "ab") as out:
        if header:
            out.write(f"\n===== {header}\n".encode())
            out.flush()
        proc = subprocess.Popen(  # noqa: S603 - argv of the lab's own commands, no shell
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    _children[proc.pid] = proc
    started = start_time(proc.pid)
    pid_path.write_text(f"{proc.pid} {started or ''}".strip() + "\n")
    return proc.pid


def running_pid(pid_path: Path) -> int | None:
    """The pid the file names if that very process still runs, else None (the stale file is removed)."""
    try:
        fields = pid_path.read_text().split()
        pid = int(fields[0])
    except (OSError, ValueError, IndexError):
        return None
    recorded = fields[1] if len(fields) > 1 else None
    if alive(pid) and (recorded is None or start_time(pid) == recorded):
        return pid
    pid_path.unlink(missing_ok=True)
    return None


def signal_group(pid: int, sig: int) -> None:
    """Signal the process group ``pid`` leads, else ``pid`` alone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def group_members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (our exited children excluded)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return [pid for pid in members if pid not in _children or alive(pid)]


def _gone(pid: int) -> bool:
    return not alive(pid) and not group_members(pid)


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` and its process group are gone; False when the timeout passed first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.2)
    return _gone(pid)


def stop_groups(pids: dict[str, int], timeouts: dict[str, float] | float) -> list[str]:
    """SIGTERM each group, wait (each its own timeout), SIGKILL what is left; the names that survived."""
    for name, pid in pids.items():
        log.info("%s: stopping pid %d (SIGTERM)", name, pid)
        signal_group(pid, signal.SIGTERM)
    started = time.monotonic()
    survivors = []
    for name, pid in pids.items():
        limit = timeouts[name] if isinstance(timeouts, dict) else timeouts
        if wait_exit(pid, max(0.0, limit - (time.monotonic() - started))):
            log.info("%s: stopped after %.1f s", name, time.monotonic() - started)
            continue
        log.warning("%s: still running after %.0f s, sending SIGKILL", name, limit)
        signal_group(pid, signal.SIGKILL)
        if not wait_exit(pid, KILL_WAIT):
            survivors.append(name)
    return survivors


def rss_mib(pid: int) -> float | None:
    """The resident memory of ``pid`` in MiB, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cli_logging(quiet: tuple[str, ...] = ("kafka", "cassandra")) -> None:
    """The services' command lines log bare messages to stdout; the clients' libraries only their errors."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    for library in quiet:
        logging.getLogger(library).setLevel(logging.ERROR)


# --------------------------------------------------------------------------------------------
# listening sockets, from /proc


def _decode_proc_address(hex_address: str) -> tuple[str, int]:
    host_hex, port_hex = hex_address.split(":")
    raw = bytes.fromhex(host_hex)
    # /proc/net/tcp{,6} print the address as 32-bit words in host (little-endian) order.
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    host = socket.inet_ntop(family, raw)
    if host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:") :]
    return host, int(port_hex, 16)


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process `pid` holds open, from /proc (empty when it cannot be seen)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def listening_table(proc: str = "/proc") -> list[tuple[tuple[str, int], int]]:
    """((address, port), socket inode) of every listening TCP socket in `proc`/net/tcp and tcp6."""
    found = []
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(f"{proc}/net/{table}").read_text().splitlines()[1:]:
                cols = row.split()
                if len(cols) > 9 and cols[3] == "0A":  # 0A = LISTEN
                    found.append((_decode_proc_address(cols[1]), int(cols[9])))
    return found


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket that process `pid` listens on, from /proc."""
    inodes = socket_inodes(pid)
    return sorted({address for address, inode in listening_table(f"/proc/{pid}") if inode in inodes})


def group_listeners(pgid: int) -> list[tuple[str, int]]:
    """Every (address, port) that a process of group ``pgid`` listens on."""
    inodes: set[int] = set()
    for pid in group_members(pgid):
        inodes |= socket_inodes(pid)
    return sorted({address for address, inode in listening_table() if inode in inodes})


def port_owner(port: int) -> str:
    """'pid N: command' of the process listening on ``port``, or '' when it cannot be seen."""
    inodes = {inode for (_, p), inode in listening_table() if p == port}
    if not inodes:
        return ""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and socket_inodes(int(entry.name)) & inodes:
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                cmd = "?"
            return f"pid {entry.name}: {cmd[:80]}"
    return ""
