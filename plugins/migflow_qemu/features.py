"""What the QEMU backend accepts, by name: flags and options.

Plain data, importable without starting anything, so that ``migflow validate``
and ``migflow plugins`` stay fast.
"""

from __future__ import annotations

__all__ = [
    "FLAG_CAPABILITIES",
    "LIBVIRT_OPTIONS",
    "UNSUPPORTED_FLAGS",
    "rules",
]

#: migrate-step flag -> the QEMU capability it switches on (both sides)
FLAG_CAPABILITIES = {
    "parallel": "multifd",
    "compressed": "xbzrle",
    "auto-converge": "auto-converge",
    "postcopy": "postcopy-ram",
}

#: flags the qemu backend cannot honour, with the reason; refused by ``migflow validate``
UNSUPPORTED_FLAGS = {
    "persistent": "the qemu backend keeps no domain definitions",
    "undefinesource": "the qemu backend keeps no domain definitions",
    "tunnelled": "only libvirtd can tunnel the migration stream",
    "tls": "QEMU TLS needs tls-creds objects the qemu backend does not create",
    "unsafe": "a libvirt safety check; QEMU has none to skip",
    "abort-on-error": "a libvirt flag (abort on guest I/O errors)",
    "paused": "not implemented by the qemu backend",
    "copy-storage-all": "the qemu backend's guest has no disk to copy (libvirt copies disks with an NBD server and blockdev-mirror)",
    "copy-storage-inc": "the qemu backend's guest has no disk to copy (libvirt copies disks with an NBD server and blockdev-mirror)",
    "copy-storage-synchronous-writes": "a libvirt storage-migration flag, and the qemu backend's guest has no disk",
    "offline": "an offline migration moves a libvirt domain definition; the qemu backend has none",
    "change-protection": "a libvirt flag (it forbids changing the domain definition during the migration)",
    "zerocopy": "not implemented by the qemu backend yet",
}

#: migrate-step options only the libvirt backend knows -> why the qemu backend refuses them
LIBVIRT_OPTIONS = {
    "dname": "the destination QEMU keeps the guest's name (-name): there is no domain to rename",
    "listen_address": 'the destination QEMU listens on its host\'s migration address; give a different one with migrate_uri = "tcp://ADDRESS[:PORT]"',
    "migrate_disks": "the qemu backend's guest has no disks to copy",
    "disks_port": "the qemu backend's guest has no disks to copy (no NBD server)",
    "destination_xml": "there is no libvirt domain XML on the qemu backend",
    "persistent_xml": "there is no libvirt domain XML on the qemu backend",
}


def rules() -> list:
    """Combinations the qemu backend refuses, checked by ``migflow validate``:
    each ``(condition(flags, capabilities, parameters, options), path, message)``.

    ``flags`` are the migrate step's (the mode's included), ``capabilities`` those
    switched on in the scenario (set-capabilities and the flags' own).
    """

    return [
        (
            lambda f, c, p, o: "postcopy_switch" in o,
            "postcopy_switch",
            'postcopy_switch is not implemented by the qemu backend yet (timeout.action = "postcopy" is)',
        ),
    ]
