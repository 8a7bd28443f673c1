"""What the libvirt backend accepts, by name, and how each name maps onto libvirt.

Plain data, importable without libvirt, so that ``migflow validate`` and
``migflow plugins`` stay fast: the backend resolves the constant names when a
workflow runs.  Sources: libvirt 9.0's ``qemu_migration_params.c``
(which capability each flag drives, what libvirt sets on its own) and
``libvirt-domain.h``; see docs/steps.md for the table users read.
"""

from __future__ import annotations

__all__ = ["CAPABILITY_FLAGS", "FLAGS", "MANAGED_CAPABILITIES", "PARAMETERS"]

#: migrate-step flag -> libvirt constant (``VIR_MIGRATE_*``); None: no bit of its own
FLAGS: dict[str, str | None] = {
    "live": "VIR_MIGRATE_LIVE",
    "peer2peer": "VIR_MIGRATE_PEER2PEER",
    "tunnelled": "VIR_MIGRATE_TUNNELLED",
    "direct": None,  # no flag: direct means "not peer2peer, to a hypervisor URI"
    "persistent": "VIR_MIGRATE_PERSIST_DEST",
    "undefinesource": "VIR_MIGRATE_UNDEFINE_SOURCE",
    "paused": "VIR_MIGRATE_PAUSED",
    "compressed": "VIR_MIGRATE_COMPRESSED",
    "auto-converge": "VIR_MIGRATE_AUTO_CONVERGE",
    "postcopy": "VIR_MIGRATE_POSTCOPY",
    "tls": "VIR_MIGRATE_TLS",
    "abort-on-error": "VIR_MIGRATE_ABORT_ON_ERROR",
    "unsafe": "VIR_MIGRATE_UNSAFE",
    "parallel": "VIR_MIGRATE_PARALLEL",
}

#: QMP capability -> (the libvirt flag that switches it on, compression method or None)
CAPABILITY_FLAGS: dict[str, tuple[str, str | None]] = {
    "xbzrle": ("compressed", "xbzrle"),
    "auto-converge": ("auto-converge", None),
    "postcopy-ram": ("postcopy", None),
    "multifd": ("parallel", None),
}

#: capabilities libvirt sets itself when a migration starts, overriding a QMP
#: value set before: refused in set-capabilities, with what to do instead
MANAGED_CAPABILITIES: dict[str, str] = {
    "return-path": "libvirt switches return-path on for every migration that is not tunnelled (and off for tunnelled ones): remove it",
    "pause-before-switchover": "libvirt always switches pause-before-switchover on for the source and answers the pause itself: remove it",
    "late-block-activate": "libvirt always switches late-block-activate on for the destination: remove it",
    "events": "libvirt always switches QEMU's migration events on (it depends on them): remove it",
    "rdma-pin-all": "libvirt sets rdma-pin-all from its own flag (VIR_MIGRATE_RDMA_PIN_ALL), which migflow does not offer",
}

#: QMP parameter -> libvirt typed parameter constant (``VIR_MIGRATE_PARAM_*``)
PARAMETERS: dict[str, str] = {
    "xbzrle-cache-size": "VIR_MIGRATE_PARAM_COMPRESSION_XBZRLE_CACHE",
    "cpu-throttle-initial": "VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL",
    "cpu-throttle-increment": "VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT",
    "multifd-channels": "VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS",
}
