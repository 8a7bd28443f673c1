"""A fake backend and test steps, for fast engine unit tests only.

Nothing that claims to test migration uses this: real migrations are tested
on the lab (tests/test_libvirt_*.py).  These check the engine's bookkeeping:
step order, always-run steps, statuses, signals, records.
"""

from __future__ import annotations

import time
from typing import ClassVar

from migflow.backend import Backend
from migflow.errors import StepError
from migflow.hookspecs import hookimpl
from migflow.registry import BackendSpec, ModeSpec, StepSpec


class FakeBackend(Backend):
    name = "fake"
    calls: ClassVar[list] = []
    legs_done: ClassVar[int] = 0  # legs migrated so far (the option "downtimes" cycles through its values)

    def open(self):
        FakeBackend.calls.append("open")

    def close(self):
        FakeBackend.calls.append("close")

    def prepare_domain(self, ctx, domain, options):
        ctx.state["domain"] = {"uuid": "00000000-0000-0000-0000-000000000001", "name": "fake", "host": "source"}
        FakeBackend.calls.append("prepare")
        return {"name": "fake"}

    def set_capabilities(self, ctx, capabilities, parameters):
        return {"capabilities": capabilities, "parameters": parameters}

    def migrate(self, ctx, leg, mode, options):
        FakeBackend.calls.append(f"migrate {leg.number}")
        seconds = options.get("sleep", 0.3) if isinstance(options, dict) else 0.3
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if leg.backend_state.get("aborted"):
                raise StepError("operation aborted: job 'migration out' canceled by client")
            time.sleep(0.01)
        downtimes = options.get("downtimes", [5]) if isinstance(options, dict) else [5]
        FakeBackend.legs_done += 1
        leg.final_stats = {
            "status": "completed",
            "total-time": 300,
            "downtime": downtimes[(FakeBackend.legs_done - 1) % len(downtimes)],
            "setup-time": 1,
            "ram": {"total": 1000, "transferred": 900, "remaining": 0, "mbps": 1.0, "dirty-sync-count": 2},
        }

    def poll(self, leg):
        return {"status": "active", "ram": {"total": 1000, "transferred": int(leg.elapsed_ms()), "remaining": 500, "mbps": 1.0, "dirty-sync-count": 1}}

    def abort(self, leg):
        leg.backend_state["aborted"] = True

    def locate(self, uuid):
        return {"source": "running", "destination": None}

    def restore(self, ctx, options):
        FakeBackend.calls.append("restore")
        return {"restored": True}


def _explode(ctx, options):
    raise StepError(options.get("message", "boom"))


def _sleep(ctx, options):
    time.sleep(options.get("seconds", 1))
    return {"slept": options.get("seconds", 1)}


@hookimpl
def migflow_register_backends(register):
    register(BackendSpec("fake", FakeBackend, description="engine tests only"))


@hookimpl
def migflow_register_modes(register):
    register(ModeSpec("fake-mode", "fake", ("live",)))


@hookimpl
def migflow_register_steps(register):
    register(StepSpec("explode", _explode, {"type": "object", "properties": {"message": {"type": "string"}}, "additionalProperties": False}))
    register(StepSpec("sleep", _sleep, {"type": "object", "properties": {"seconds": {"type": "number"}}, "additionalProperties": False}))
