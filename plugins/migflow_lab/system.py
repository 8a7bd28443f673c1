"""Small system helpers of the lab: commands, namespaces, links, processes, ports.

Nothing here knows the lab's layout; :mod:`.network` and :mod:`.daemons` use
these to build it and :mod:`.lifecycle` to take it down.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

from migflow.errors import HostError, PrerequisiteError
from migflow.procs import all_pids, command_name, process_start

__all__ = [
    "INSTALL_HINT",
    "Echo",
    "is_mountpoint",
    "kill_processes",
    "link_exists",
    "marked_pids",
    "netns_inode",
    "netns_list",
    "pids_in_netns",
    "port_open",
    "quiet",
    "run",
    "which",
]

INSTALL_HINT = "run as root: sh scripts/install-prereqs.sh (from the migflow checkout; installs the Debian packages and creates the user and groups)"

Echo = Callable[[str], None]


def quiet(_msg: str) -> None:
    """An ``echo`` that says nothing."""


def run(argv: list[str], *, check: bool = True, what: str | None = None, **kw: Any) -> subprocess.CompletedProcess:
    """Run a command with text output captured; :class:`HostError` naming it when it fails (``check``)."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 60)
    try:
        proc = subprocess.run(argv, check=False, **kw)
    except FileNotFoundError as exc:
        raise PrerequisiteError(f"command not found: {argv[0]}", hint=INSTALL_HINT) from exc
    except subprocess.TimeoutExpired as exc:
        raise HostError(f"{what or ' '.join(argv)}: timed out after {kw['timeout']} s") from exc
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise HostError(f"{what or ' '.join(argv)} failed: {err[-1] if err else f'exit status {proc.returncode}'}")
    return proc


def which(cmd: str) -> str | None:
    return shutil.which(cmd) or shutil.which(cmd, path="/usr/sbin:/sbin:/usr/bin:/bin")


def port_open(address: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def netns_list() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except OSError:
        return []


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def is_mountpoint(path: str) -> bool:
    """Like os.path.ismount, but also true for a bind mount of a folder onto itself
    (what `ip netns add` does with /run/netns), which ismount cannot see."""
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return os.path.ismount(path)


def link_exists(dev: str) -> bool:
    return os.path.exists(f"/sys/class/net/{dev}")


def pids_in_netns(inodes: set[int]) -> list[int]:
    """Processes whose network namespace is one of ``inodes`` (what ``ip netns pids`` does)."""
    out = []
    me = os.getpid()
    for pid in all_pids():
        if pid == me:
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino in inodes and process_start(pid) is not None:
                out.append(pid)
        except OSError:
            continue
    return out


def marked_pids(marker: str) -> dict[int, str]:
    """Live processes whose environment carries ``marker=VALUE``, mapped to VALUE."""
    out = {}
    needle = (marker + "=").encode()
    for pid in all_pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env and process_start(pid) is not None:
            for item in env.split(b"\0"):
                if item.startswith(needle):
                    out[pid] = item[len(needle) :].decode(errors="replace")
    return out


def kill_processes(pids: list[int], echo: Echo, what: str) -> None:
    """SIGTERM, wait up to 5 s, then SIGKILL; wait until they are gone.  Only the
    processes that are alive now, identified by PID and start time, are signalled."""
    entries = [(p, process_start(p)) for p in pids]
    live = [(p, s) for p, s in entries if s is not None]
    if not live:
        return
    for pid, _ in live:
        echo(f"lab: ending {what} pid {pid} ({command_name(pid)})")
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for sig, wait in ((None, 5.0), (signal.SIGKILL, 5.0)):
        if sig is not None:
            for pid, start in live:
                if process_start(pid) == start:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if all(process_start(pid) != start for pid, start in live):
                return
            time.sleep(0.05)
    left = [pid for pid, start in live if process_start(pid) == start]
    if left:
        raise HostError(f"could not end {what} {left}")
