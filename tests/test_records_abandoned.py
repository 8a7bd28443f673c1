"""A run whose migflow process died becomes abandoned (src/migflow/records/abandoned.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from migflow.procs import process_start
from migflow.records.abandoned import abandon, owner_is_dead


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True)
    return int(proc.stdout)


def spool(status="running", pid=None, hostname=None, pid_start=None):
    return {"run": {"status": status, "pid": pid, "hostname": hostname or socket.gethostname()}, "pid_start": pid_start}


def test_only_a_running_run_of_a_gone_process_on_this_machine_is_dead():
    me, gone = os.getpid(), _dead_pid()
    assert owner_is_dead(spool(pid=gone)) is True
    assert owner_is_dead(spool(pid=me, pid_start=process_start(me))) is False
    assert owner_is_dead(spool(pid=me, pid_start=process_start(me) + 1)) is True, "the PID was reused by another process"
    assert owner_is_dead(spool(pid=gone, hostname="another-host.example")) is False, "cannot be told from here"
    assert owner_is_dead(spool(status="completed", pid=gone)) is False
    assert owner_is_dead({"pid_start": None}) is False


def test_abandon_marks_the_run_and_what_was_still_running():
    data = {
        "run": {"status": "running", "error": None},
        "migrations": [
            {"leg": 1, "status": "completed", "ended_at": "t1"},
            {"leg": 2, "status": "running"},
            {"leg": 3, "status": "running", "error": "stalled", "ended_at": "t3"},
        ],
        "steps": [
            {"position": 0, "status": "completed"},
            {"position": 1, "status": "running"},
            {"position": 2, "status": "running", "error": "own"},
            {"position": 3, "status": "skipped"},
        ],
    }
    abandon(data, "migflow process 7 ended while the run was in progress", "t9")
    assert data["run"] == {"status": "abandoned", "error": "migflow process 7 ended while the run was in progress", "ended_at": "t9"}
    assert data["migrations"] == [
        {"leg": 1, "status": "completed", "ended_at": "t1"},
        {"leg": 2, "status": "abandoned", "error": "migflow process 7 ended while the run was in progress", "ended_at": "t9"},
        {"leg": 3, "status": "abandoned", "error": "stalled", "ended_at": "t3"},
    ]
    assert data["steps"] == [
        {"position": 0, "status": "completed"},
        {"position": 1, "status": "abandoned", "error": "migflow process 7 ended while the run was in progress"},
        {"position": 2, "status": "abandoned", "error": "own"},
        {"position": 3, "status": "skipped"},
    ]


def test_abandon_keeps_a_known_end_and_needs_no_legs_or_steps():
    data = {"run": {"status": "running", "ended_at": "t1"}, "migrations": None}
    abandon(data, "gone", "t2")
    assert data == {"run": {"status": "abandoned", "error": "gone", "ended_at": "t1"}, "migrations": None}
