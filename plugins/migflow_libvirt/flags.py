"""What the libvirt backend accepts, by name, and how each name maps onto libvirt.

Plain data, importable without libvirt, so that ``migflow validate`` and
``migflow plugins`` stay fast: the backend resolves the constant names when a
workflow runs.  Sources: libvirt 9.0's ``qemu_migration_params.c``
(which capability each flag drives, what libvirt sets on its own) and
``libvirt-domain.h``; see docs/steps.md for the table users read.
"""

from __future__ import annotations

__all__ = ["CAPABILITY_FLAGS", "COPY_STORAGE", "FLAGS", "MANAGED_CAPABILITIES", "PARAMETERS"]

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
    "copy-storage-all": "VIR_MIGRATE_NON_SHARED_DISK",
    "copy-storage-inc": "VIR_MIGRATE_NON_SHARED_INC",
    "copy-storage-synchronous-writes": "VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES",
    "offline": "VIR_MIGRATE_OFFLINE",
    "change-protection": "VIR_MIGRATE_CHANGE_PROTECTION",
    "zerocopy": "VIR_MIGRATE_ZEROCOPY",
}


#: libvirt's rules for flags and options (libvirt 9.0, qemu_migration.c and libvirt-domain.c): each a
#: (condition on (flags, options), path, message) checked by ``migflow validate``; the lowest versions are in docs/steps.md
def rules() -> list:
    def has(*names):
        return lambda f, o: all(n in f for n in names)

    return [
        (has("copy-storage-all", "copy-storage-inc"), "flags", "copy-storage-all and copy-storage-inc exclude each other (libvirt: mutually exclusive flags)"),
        (
            lambda f, o: "copy-storage-synchronous-writes" in f and not set(COPY_STORAGE) & f,
            "flags",
            "copy-storage-synchronous-writes needs copy-storage-all or copy-storage-inc",
        ),
        (
            lambda f, o: set(COPY_STORAGE) & f and "tunnelled" in f,
            "flags",
            "a tunnelled migration cannot copy storage (libvirt 9.0 reports it and carries on: migflow refuses it)",
        ),
        (
            lambda f, o: ("migrate_disks" in o or "disks_port" in o) and not set(COPY_STORAGE) & f,
            "migrate_disks",
            "migrate_disks and disks_port need copy-storage-all or copy-storage-inc (libvirt 9.0 ignores them silently otherwise)",
        ),
        (
            lambda f, o: "disks_port" in o and "tunnelled" in f,
            "disks_port",
            "a tunnelled migration has no disk port (libvirt: not supported by tunnelled migration)",
        ),
        (
            lambda f, o: "listen_address" in o and "tunnelled" in f,
            "listen_address",
            "a tunnelled migration has no listen address (libvirt: not supported by tunnelled migration)",
        ),
        (
            has("offline", "live"),
            "flags",
            "offline and live exclude each other: an offline migration moves only the definition (a mode with live cannot be offline)",
        ),
        (
            lambda f, o: "offline" in f and "persistent" not in f,
            "flags",
            "offline needs persistent (libvirt: offline migration must be specified with the persistent flag set)",
        ),
        (lambda f, o: "offline" in f and set(COPY_STORAGE) & f, "flags", "an offline migration cannot copy storage"),
        (lambda f, o: "offline" in f and "tunnelled" in f, "flags", "a tunnelled offline migration does not make sense (libvirt)"),
        (
            lambda f, o: "zerocopy" in f and "parallel" not in f,
            "flags",
            "zerocopy needs parallel (libvirt: zero-copy is only available for parallel migration)",
        ),
        (
            lambda f, o: "zerocopy" in f and ("compressed" in f or "tls" in f),
            "flags",
            "zerocopy works neither with compression nor with TLS (QEMU: zero copy only available for non-compressed non-TLS multifd migration)",
        ),
        (
            lambda f, o: "persistent_xml" in o and "persistent" not in f,
            "persistent_xml",
            "persistent_xml needs the persistent flag (virsh: --persistent is required by --persistent-xml)",
        ),
        (
            lambda f, o: "postcopy_switch" in o and "postcopy" not in f,
            "postcopy_switch",
            "postcopy_switch needs the postcopy flag (post-copy must be enabled before the migration starts)",
        ),
        (
            lambda f, o: "tls" in f and "tunnelled" in f,
            "flags",
            "tls with tunnelled is not supported by libvirt 9.0 (the stream is protected by the libvirt connection instead)",
        ),
    ]


#: flags that copy the guest's disks to the destination (libvirt's NBD storage migration)
COPY_STORAGE = ("copy-storage-all", "copy-storage-inc")

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
