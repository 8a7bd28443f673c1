"""Built-in plugin: a QEMU backend without libvirt (QMP directly).

``backend = "qemu"`` in a workflow.  migflow starts the source and
destination QEMU processes itself, on the lab's hosts (inside their
namespaces) or on this machine, and drives them over QMP: see
:mod:`migflow_qemu.backend` and docs/qemu-backend.md.

Host URIs (see :mod:`migflow_qemu.hosts`): ``qemu+lab://mflab-a``, the lab's
libvirt URIs (the default hosts), ``qemu+local://ADDRESS``.

Modes (``mode = "..."`` in the migrate step):

===============  ===================  ==================================================
mode             flags                 what QEMU does
===============  ===================  ==================================================
qmp-tcp          live                  ``migrate tcp:DEST:PORT``: pre-copy, one connection
qmp-multifd      live, parallel        capability ``multifd`` on both sides: several TCP
                                       channels (parameter ``multifd-channels``, QEMU's
                                       default 2)
===============  ===================  ==================================================
"""

from __future__ import annotations

from migflow.hookspecs import hookimpl
from migflow.registry import BackendSpec, ModeSpec

__all__ = ["MODES", "migflow_prepare_hosts", "migflow_register_backends", "migflow_register_modes", "migflow_validate_scenario"]


def _unsupported() -> dict:
    from .backend import UNSUPPORTED_FLAGS  # no heavy imports there: os, threading, subprocess

    return dict(UNSUPPORTED_FLAGS)


def _known_flags() -> tuple[str, ...]:
    from .backend import FLAG_CAPABILITIES, UNSUPPORTED_FLAGS

    return ("live", *FLAG_CAPABILITIES, *UNSUPPORTED_FLAGS)


MODES = (
    ModeSpec("qmp-tcp", "qemu", ("live",), incompatible=_unsupported(), description="QMP migrate to tcp:DEST:PORT, pre-copy over one connection (no libvirt)"),
    ModeSpec(
        "qmp-multifd",
        "qemu",
        ("live", "parallel"),
        incompatible=_unsupported(),
        description="QMP migrate with the multifd capability on both sides (multifd-channels connections)",
    ),
)


def _factory(source_uri: str, destination_uri: str):
    from .backend import QemuBackend

    return QemuBackend(source_uri, destination_uri)


@hookimpl
def migflow_register_backends(register):
    register(
        BackendSpec(
            "qemu",
            _factory,
            description="QEMU processes started by migflow and driven over QMP (no libvirt): qemu+lab://HOST, qemu+local://ADDRESS",
            default_mode="qmp-tcp",
            flags=_known_flags(),
        )
    )


@hookimpl
def migflow_register_modes(register):
    for mode in MODES:
        register(mode)


@hookimpl
def migflow_validate_scenario(workflow, scenario, plugins):
    if getattr(workflow, "backend", None) != "qemu":
        return []
    domain = scenario.domain or {}
    if "create" not in domain:
        return [("domain", "the qemu backend starts its own guest: describe it in [domain.create] ([domain] name/uuid name libvirt domains)")]
    if int(domain["create"].get("count", 1) or 1) > 1:
        return [("domain.create.count", "the qemu backend migrates one guest per run: use the libvirt backend for several guests (an evacuation)")]
    return []
