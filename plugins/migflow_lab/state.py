"""The lab's state file and its lock.

``/var/lib/migflow-lab/state.json`` (``MIGFLOW_LAB_ROOT`` moves it) records
every PID the lab started (with its start time), the namespaces' inodes, the
paths it created and the link shaping in force, so that ``down`` ends exactly
those and a killed lab is recognised and cleaned up by the next ``up``.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from migflow.procs import process_alive

from . import shaping

__all__ = ["LAB_ROOT", "STATE_FILE", "alive", "empty_link", "locked", "new_state", "read_state", "write_state"]

LAB_ROOT = Path(os.environ.get("MIGFLOW_LAB_ROOT", "/var/lib/migflow-lab"))
STATE_FILE = LAB_ROOT / "state.json"

_lock = threading.RLock()
_lock_depth = 0
_lock_fd: int | None = None


@contextmanager
def locked() -> Iterator[None]:
    """Serialize up/down/shape between processes (two runs preparing the lab at once).

    flock on the folder that holds LAB_ROOT (``/var/lib``): it leaves no file behind,
    and LAB_ROOT itself comes and goes.  Reentrant within a process.
    """
    global _lock_depth, _lock_fd
    with _lock:
        if _lock_depth == 0:
            LAB_ROOT.parent.mkdir(parents=True, exist_ok=True)
            _lock_fd = os.open(LAB_ROOT.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fcntl.flock(_lock_fd, fcntl.LOCK_EX)
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
            if _lock_depth == 0 and _lock_fd is not None:
                os.close(_lock_fd)  # releases the flock
                _lock_fd = None


def read_state() -> dict | None:
    """The state, None when there is no file, ``{}`` when it cannot be read (treated as leftovers)."""
    try:
        with open(STATE_FILE) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(state: dict) -> None:
    LAB_ROOT.mkdir(parents=True, exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2, sort_keys=True)
    os.replace(tmp, STATE_FILE)


def empty_link() -> dict:
    """An unshaped link: every shaping key None."""
    return dict.fromkeys(shaping.LINK_KEYS)


def new_state() -> dict:
    return {"version": 1, "hosts": {}, "pids": [], "netns": {}, "created_paths": [], "mounted_run_netns": False, "link": empty_link()}


def alive(entry: dict | None) -> bool:
    """Is the process recorded as ``{"pid": n, "start": ticks}`` still the same live process?"""
    if not entry or not entry.get("pid"):
        return False
    return bool(process_alive(int(entry["pid"]), entry.get("start")))
