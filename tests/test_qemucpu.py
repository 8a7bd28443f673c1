"""The lab's QEMU CPU accounting (plugins/migflow_lab/qemucpu.py) on made-up readings."""

from __future__ import annotations

from migflow_lab.qemucpu import _Usage


def test_an_exited_vcpu_thread_keeps_its_time():
    base, now = _Usage(), _Usage()
    base.update((1000.0, {"11": 400.0, "12": 300.0}))
    now.update((1500.0, {"11": 600.0, "12": 350.0}))
    now.update((1600.0, {"11": 650.0}))  # thread 12 exited as QEMU shut down: its 350 ms stay counted
    assert now.since(base) == (600.0, 300.0)


def test_a_new_process_counts_from_its_start():
    dst = _Usage()
    assert dst.since(None) is None  # not seen yet
    dst.update((200.0, {"21": 50.0}))
    dst.update(None)  # gone: the last reading stands
    assert dst.since(None) == (200.0, 50.0)
