"""One QEMU process the backend started: its Popen handle, QMP client and log.

The backend only ever ends processes it started, through their own Popen
handle (so a PID is never reused under it): ``quit`` over QMP, then SIGTERM,
then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from migflow.errors import StepError

from .qmp import QMPClient, QMPConnectionError, QMPError

__all__ = ["QemuProcess"]


class QemuProcess:
    """Start ``argv`` (already wrapped for its host) and connect to its QMP socket."""

    @property
    def client(self) -> QMPClient:
        """The QMP connection of a started process (a :class:`StepError` before :meth:`start`)."""
        if self.qmp is None:
            raise StepError(f"QEMU on {self.host.name} has no QMP connection (it was not started)")
        return self.qmp

    def __init__(self, host, argv: list[str], qmp_path: str, log_path: str, role: str):
        self.host = host
        self.argv = argv
        self.qmp_path = qmp_path
        self.log_path = log_path
        self.role = role  # "source" / "destination" (where it was started, in the run's terms)
        self.popen: subprocess.Popen | None = None
        self.qmp: QMPClient | None = None
        self.kept = False
        #: what this QEMU told once and cannot change: its version, the names it offers
        self.facts: dict = {}
        #: ids of the tls-creds objects added to it (object-add)
        self.tls_objects: set[str] = set()

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self, timeout: float = 30.0) -> QemuProcess:
        try:
            os.unlink(self.qmp_path)
        except FileNotFoundError:
            pass
        with open(self.log_path, "ab") as log:
            try:
                # A session of its own: Ctrl-C in migflow's terminal must not reach QEMU
                # (the engine aborts the job and restore ends the processes).
                self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            except OSError as exc:
                raise StepError(f"cannot start QEMU on {self.host.name}: {exc}") from None
        try:
            self.qmp = QMPClient(self.qmp_path).connect(timeout=timeout, alive=self.alive)
        except QMPConnectionError as exc:
            self.stop()
            raise StepError(f"QEMU on {self.host.name} did not come up: {self.log_tail() or exc}") from None
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def status(self) -> str | None:
        """QMP ``query-status`` status (running, paused, inmigrate, postmigrate ...), None when gone."""
        if not self.alive() or self.qmp is None:
            return None
        try:
            return self.qmp.execute("query-status", timeout=5)["status"]
        except (QMPError, QMPConnectionError):
            return None if not self.alive() else "unreachable"

    def log_tail(self, lines: int = 3) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                text = [ln.strip() for ln in f.read().splitlines() if ln.strip() and "warning: host doesn't support requested feature" not in ln]
        except OSError:
            return ""
        return "; ".join(text[-lines:])

    def stop(self, timeout: float = 5.0) -> str:
        """End the process (quit, SIGTERM, SIGKILL); returns how.  Never raises."""
        how = "already exited"
        if self.alive() and self.qmp is not None and not self.qmp.closed:
            try:
                self.qmp.execute("quit", timeout=2)
                how = "quit"
            except (QMPError, QMPConnectionError):
                pass
        if self.popen is not None:
            for sig, label in ((None, how), (signal.SIGTERM, "SIGTERM"), (signal.SIGKILL, "SIGKILL")):
                if sig is not None and self.popen.poll() is None:
                    try:
                        self.popen.send_signal(sig)
                        how = label
                    except ProcessLookupError:
                        pass
                try:
                    self.popen.wait((timeout if how == "quit" else 0.1) if sig is None else 5.0)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.qmp is not None:
            self.qmp.close()
        try:
            os.unlink(self.qmp_path)
        except OSError:
            pass
        return how

    def wait_exit(self, timeout: float) -> bool:
        if self.popen is None:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                return True
            time.sleep(0.01)
        return False
