"""Built-in plugin: the libvirt backend and the migration modes of the seed write-up.

Modes (``mode = "..."`` in the migrate step):

================  =============================================  ===========================
mode              libvirt flags                                   virsh equivalent
================  =============================================  ===========================
managed-direct    live                                            ``virsh migrate DOM URI``
p2p               live, peer2peer                                 ``--p2p``
p2p-tunnelled     live, peer2peer, tunnelled                      ``--p2p --tunnelled``
unmanaged-direct  live, direct (to ``tcp://HOST``)                ``--direct``
zstack            live, peer2peer, undefinesource, persistent     ZStack's default
================  =============================================  ===========================
"""

from __future__ import annotations

from migflow.hookspecs import hookimpl
from migflow.registry import BackendSpec, ModeSpec

__all__ = ["MODES", "migflow_register_backends", "migflow_register_modes", "migflow_validate_scenario"]

_TUNNEL_LIMITS = {
    "postcopy": "libvirt cannot tunnel post-copy migration through libvirtd",
    "capability:postcopy-ram": "libvirt cannot tunnel post-copy migration through libvirtd",
    "parallel": "multifd (parallel) connections cannot be tunnelled",
    "capability:multifd": "multifd (parallel) connections cannot be tunnelled",
    "tls": "a tunnelled stream is protected by the libvirt connection, not by QEMU TLS",
}

MODES = (
    ModeSpec("managed-direct", "libvirt", ("live",), description="the client drives both hosts (plain `virsh migrate DOM URI`)"),
    ModeSpec("p2p", "libvirt", ("live", "peer2peer"), description="the source libvirtd drives the migration (`--p2p`)"),
    ModeSpec(
        "p2p-tunnelled",
        "libvirt",
        ("live", "peer2peer", "tunnelled"),
        incompatible=_TUNNEL_LIMITS,
        description="p2p with the data tunnelled through libvirtd (`--p2p --tunnelled`)",
    ),
    ModeSpec(
        "unmanaged-direct",
        "libvirt",
        ("live", "direct"),
        destination="migrate-uri",
        description="hypervisor-managed direct migration (`--direct tcp://HOST`); QEMU does not support it",
    ),
    ModeSpec(
        "zstack",
        "libvirt",
        ("live", "peer2peer", "undefinesource", "persistent"),
        description="ZStack's default (`--live --p2p --undefinesource --persistent`)",
    ),
    ModeSpec(
        "offline",
        "libvirt",
        ("offline", "persistent"),
        description="the definition only, no memory (`--offline --persistent`): the guest stays where it runs",
    ),
)


def _factory(source_uri: str, destination_uri: str):
    from .backend import LibvirtBackend  # libvirt is imported only when a workflow runs

    return LibvirtBackend(source_uri, destination_uri)


@hookimpl
def migflow_register_backends(register):
    from .flags import FLAGS

    register(
        BackendSpec("libvirt", _factory, description="libvirt hosts over qemu+tcp/tls/ssh URIs (QEMU/KVM)", default_mode="managed-direct", flags=tuple(FLAGS))
    )


@hookimpl
def migflow_validate_scenario(workflow, scenario, plugins):
    """Capabilities libvirt sets itself cannot be set over QMP beforehand: say what to do instead."""
    if workflow.backend != "libvirt":
        return []
    from .flags import CAPABILITY_FLAGS, MANAGED_CAPABILITIES, rules  # the other capabilities are mapped onto libvirt's flags or set over QMP

    issues = []
    # what set-capabilities switches on becomes libvirt flags of the migration: the rules see them too
    enabled: set[str] = set()
    for use in scenario.steps:
        if use.name == "set-capabilities":
            enabled |= {CAPABILITY_FLAGS[c][0] for c, on in use.options.get("capabilities", {}).items() if on and c in CAPABILITY_FLAGS}
            if use.options.get("parameters", {}).get("multifd-compression", "none") != "none":
                enabled.add("compressed")
    for use in scenario.steps:
        if use.name != "migrate":
            continue
        mode = plugins.modes.get(use.options.get("mode") or "managed-direct")
        flags = set(use.options.get("flags", [])) | set(mode.flags if mode else ()) | enabled
        for applies, key, message in rules():
            if applies(flags, use.options):
                issues.append((f"steps[{use.index}].{key}", message))
        if "offline" in flags and workflow.round_trip:
            issues.append(
                (
                    "round_trip",
                    "an offline migration copies the definition and leaves the guest running on the source: there is no way back; set round_trip = false",
                )
            )
    for use in scenario.steps:
        if use.name != "set-capabilities":
            continue
        for cap in use.options.get("capabilities", {}):
            if cap in MANAGED_CAPABILITIES:
                issues.append((f"steps[{use.index}].capabilities.{cap}", f"the libvirt backend cannot set {cap}: {MANAGED_CAPABILITIES[cap]}"))
    return issues


@hookimpl
def migflow_register_modes(register):
    for mode in MODES:
        register(mode)
