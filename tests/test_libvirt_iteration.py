"""libvirt's per-iteration events after the leg ended, without the lab.

libvirt hands a ``MIGRATION_ITERATION`` event over in its event loop; the
backend samples the job in a thread of its own, and on a busy machine that
thread can run after the leg ended and the source domain is gone: seen once
with two busy loops on the lab's two cores, as a thread's traceback on stderr.
"""

from __future__ import annotations

from types import SimpleNamespace

import libvirt
from migflow_libvirt.backend import LibvirtBackend


class GoneDomain:
    """A source domain object after the migration removed the domain (``--undefinesource``)."""

    def jobStats(self):
        raise libvirt.libvirtError("Domain not found: no domain with matching uuid")


def test_an_iteration_after_the_domain_left_is_no_sample_and_no_error():
    backend = LibvirtBackend("qemu+tcp://198.18.0.1/system", "qemu+tcp://198.18.0.2/system")  # never connected
    leg = SimpleNamespace(number=1, backend_state={"dom": GoneDomain()}, extra={})
    samples: list = []
    ctx = SimpleNamespace(emit_sample=lambda *args, **kwargs: samples.append((args, kwargs)))
    assert backend.poll(leg) is None  # "None when unavailable", as Backend.poll promises
    backend._iteration_sample(ctx, leg, 3)
    assert samples == [] and leg.extra == {}
