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
    from .features import UNSUPPORTED_FLAGS  # plain data

    return dict(UNSUPPORTED_FLAGS)


def _known_flags() -> tuple[str, ...]:
    from .features import FLAG_CAPABILITIES, UNSUPPORTED_FLAGS

    return ("live", "tls", *FLAG_CAPABILITIES, *UNSUPPORTED_FLAGS)


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
    """What the qemu backend cannot do, refused before anything runs: libvirt domains,
    several guests, the Linux guest, libvirt-only options and impossible combinations
    (the libvirt-only flags are the modes' ``incompatible``, checked by the steps plugin)."""
    if getattr(workflow, "backend", None) != "qemu":
        return []
    from .features import FLAG_CAPABILITIES, LIBVIRT_OPTIONS, rules

    issues = []
    domain = scenario.domain or {}
    if "create" not in domain:
        return [("domain", "the qemu backend starts its own guest: describe it in [domain.create] ([domain] name/uuid name libvirt domains)")]
    if int(domain["create"].get("count", 1) or 1) > 1:
        issues.append(("domain.create.count", "the qemu backend migrates one guest per run: use the libvirt backend for several guests (an evacuation)"))
    if domain["create"].get("guest") == "linux":
        issues.append(
            (
                "domain.create.guest",
                'the qemu backend boots the tiny guest only: the Linux guest needs the disk, NIC and consoles libvirt gives it (use backend = "libvirt")',
            )
        )
    caps: set[str] = set()
    params: dict = {}
    for use in scenario.steps:
        if use.name == "set-capabilities":
            caps |= {c for c, on in use.options.get("capabilities", {}).items() if on}
            params.update(use.options.get("parameters", {}))
    for use in scenario.steps:
        if use.name != "migrate":
            continue
        for key in use.options:
            if key in LIBVIRT_OPTIONS:
                issues.append((f"steps[{use.index}].{key}", f"{key} is a libvirt option the qemu backend cannot honour: {LIBVIRT_OPTIONS[key]}"))
        mode = plugins.modes.get(use.options.get("mode") or "qmp-tcp")
        flags = set(use.options.get("flags", [])) | set(mode.flags if mode is not None else ())
        on = caps | {FLAG_CAPABILITIES[f] for f in flags if f in FLAG_CAPABILITIES}
        for applies, key, message in rules():
            if applies(flags, on, params, use.options):
                issues.append((f"steps[{use.index}].{key}", message))
    return issues
