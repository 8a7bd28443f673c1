"""A small synchronous QMP client (QEMU Machine Protocol over a unix socket).

One reader thread per connection splits what QEMU sends into command
responses (matched by ``id``) and asynchronous events (kept in order, read
with :meth:`QMPClient.wait_event`).  :meth:`QMPClient.execute` may be called
from several threads at once: the migrate step's worker and the statistics
sampler share one client.

Why not ``qemu.qmp``: it is asyncio-based and the backend is synchronous and
threaded; the part of QMP migflow needs (greeting, ``qmp_capabilities``,
execute, events) fits in this file and is tested against a fake server.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["QMPClient", "QMPConnectionError", "QMPError"]


class QMPError(Exception):
    """QEMU answered a command with an error."""

    def __init__(self, command: str, error: dict):
        self.command = command
        self.error_class = error.get("class", "GenericError")
        self.desc = error.get("desc", "")
        super().__init__(f"{command}: {self.desc or self.error_class}")


class QMPConnectionError(Exception):
    """The QMP socket could not be reached, or the connection ended."""


class QMPClient:
    """A connection to one QEMU's QMP socket.

    :param path: the unix socket QEMU listens on (``-qmp unix:PATH,server=on,wait=off``).
    """

    def __init__(self, path: str):
        self.path = path
        self.greeting: dict | None = None
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._responses: dict[str, dict] = {}
        self._pending: list[str] = []  # ids sent and not answered yet, oldest first
        self._events: list[dict] = []
        self._closed = False
        self._reader: threading.Thread | None = None
        #: called from the reader thread for every event; must be quick and never call execute()
        self.on_event: Callable[[dict], None] | None = None

    # -- connection --------------------------------------------------------------
    def connect(self, timeout: float = 10.0, alive: Callable[[], bool] | None = None) -> QMPClient:
        """Connect (retrying until ``timeout`` while QEMU creates the socket),
        read the greeting and leave capabilities negotiation mode.

        :param alive: when given and it returns False, stop retrying at once (QEMU exited).
        """
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
                break
            except OSError as exc:
                sock.close()
                last = exc
            if time.monotonic() >= deadline or (alive is not None and not alive()):
                raise QMPConnectionError(f"cannot connect to QMP socket {self.path}: {last}")
            time.sleep(0.02)
        self._sock = sock
        self._file = sock.makefile("rb")
        sock.settimeout(max(0.05, deadline - time.monotonic()))  # a peer that accepts and stays silent
        try:
            line = self._file.readline()
        except TimeoutError:
            self.close()
            raise QMPConnectionError(f"QMP socket {self.path}: no greeting within {timeout:g} s (is it QEMU's QMP socket?)") from None
        sock.settimeout(None)
        if not line:
            self.close()
            raise QMPConnectionError(f"QMP socket {self.path} closed before the greeting")
        try:
            greeting = json.loads(line)
        except ValueError:
            self.close()
            raise QMPConnectionError(f"QMP socket {self.path}: not a QMP greeting: {line[:80]!r}") from None
        if "QMP" not in greeting:
            self.close()
            raise QMPConnectionError(f"QMP socket {self.path}: not a QMP greeting: {line[:80]!r}")
        self.greeting = greeting["QMP"]
        self._reader = threading.Thread(target=self._read_loop, name=f"qmp-{self.path}", daemon=True)
        self._reader.start()
        self.execute("qmp_capabilities", timeout=max(1.0, deadline - time.monotonic()))
        return self

    def close(self) -> None:
        """Close the connection.  Never raises."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> QMPClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------
    def _read_loop(self) -> None:
        try:
            for line in self._file:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue  # not JSON: ignore, as QMP clients do
                if "event" in msg:
                    if self.on_event is not None:
                        try:
                            self.on_event(msg)
                        except Exception:
                            pass
                    with self._cond:
                        self._events.append(msg)
                        self._cond.notify_all()
                elif "id" in msg or "error" in msg:
                    with self._cond:
                        # QEMU answers in order; an error without an id (a request it could
                        # not parse) answers the oldest command still waiting
                        cid = str(msg["id"]) if "id" in msg else (self._pending[0] if self._pending else None)
                        if cid is not None:
                            self._responses[cid] = msg
                            if cid in self._pending:
                                self._pending.remove(cid)
                        self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    # -- commands -------------------------------------------------------------------
    def execute(self, command: str, arguments: dict | None = None, timeout: float = 30.0) -> Any:
        """Run ``command`` and return its ``return`` value.

        :raises QMPError: QEMU answered with an error.
        :raises QMPConnectionError: the connection is closed, or no answer came within ``timeout``.
        """
        if self._closed or self._sock is None:
            raise QMPConnectionError(f"{command}: the QMP connection to {self.path} is closed")
        cid = f"migflow-{next(self._ids)}"
        msg: dict = {"execute": command, "id": cid}
        if arguments:
            msg["arguments"] = arguments
        data = json.dumps(msg).encode() + b"\n"
        with self._send_lock:
            with self._cond:
                self._pending.append(cid)
            try:
                self._sock.sendall(data)
            except (OSError, AttributeError) as exc:
                with self._cond:
                    self._pending.remove(cid)
                raise QMPConnectionError(f"{command}: cannot send to {self.path}: {exc}") from None
        deadline = time.monotonic() + timeout
        with self._cond:
            while cid not in self._responses:
                left = deadline - time.monotonic()
                if self._closed:
                    raise QMPConnectionError(f"{command}: the QMP connection to {self.path} closed (did QEMU exit?)")
                if left <= 0:
                    if cid in self._pending:
                        self._pending.remove(cid)
                    raise QMPConnectionError(f"{command}: no answer from {self.path} within {timeout:g} s")
                self._cond.wait(left)
            resp = self._responses.pop(cid)
        if "error" in resp:
            raise QMPError(command, resp["error"])
        return resp.get("return")

    # -- events ---------------------------------------------------------------------
    def events(self, clear: bool = True) -> list[dict]:
        """Events received so far (oldest first); ``clear`` forgets them."""
        with self._cond:
            out = list(self._events)
            if clear:
                self._events.clear()
        return out

    def wait_event(self, match: Callable[[dict], bool], timeout: float) -> dict | None:
        """Wait for (and remove) the first queued event ``match`` accepts; None on timeout or close."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, ev in enumerate(self._events):
                    if match(ev):
                        return self._events.pop(i)
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return None
                self._cond.wait(left)
