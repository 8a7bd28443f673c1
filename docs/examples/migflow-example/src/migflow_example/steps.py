"""The ``guest-check`` step: is the guest still alive after the migrations?

The lab guest writes a heartbeat byte to its serial file every millisecond
or so; migflow's backends put that file's path in
``ctx.state["domain"]["serial_path"]``.  A live guest makes the file grow.
"""

from __future__ import annotations

import os
import time

from migflow.errors import StepError

__all__ = ["GUEST_CHECK_OPTIONS", "guest_check"]

#: JSON Schema of the step's options: merged into the workflow schema, so
#: `migflow validate` catches a typo such as `within = 2`.
GUEST_CHECK_OPTIONS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "within_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600, "default": 2, "description": "how long the heartbeat may take to grow"},
    },
}


def guest_check(ctx, options: dict) -> dict:
    path = (ctx.state.get("domain") or {}).get("serial_path")
    if not path:
        raise StepError("guest-check needs a guest with a heartbeat", hint="use [domain.create] on the lab (the lab's guest writes one)")
    within = options.get("within_s", 2)
    before = os.path.getsize(path)
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        time.sleep(0.01)
        grown = os.path.getsize(path) - before
        if grown > 0:
            return {"alive": True, "grew_bytes": grown, "waited_ms": round((time.monotonic() - t0) * 1000, 1), "host": ctx.state["domain"].get("host")}
    raise StepError(f"the guest's heartbeat did not grow within {within:g} s: the guest is not running")
