"""One libvirt event loop per process, run by a daemon thread.

libvirt delivers domain events (job completed, migration iteration) and
connection keepalives only when ``virEventRegisterDefaultImpl()`` was called
before the connections were opened and something runs
``virEventRunDefaultImpl()``.
"""

from __future__ import annotations

import threading

import libvirt

__all__ = ["ensure_event_loop"]

_lock = threading.Lock()
_started = False


def _loop() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


def ensure_event_loop() -> None:
    global _started
    with _lock:
        if _started:
            return
        # libvirt prints every error to stderr by default; migflow reports them itself.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_loop, name="libvirt-events", daemon=True).start()
        _started = True
