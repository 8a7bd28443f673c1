"""What the QEMU backend accepts, by name: flags, options, and the QEMU version each feature needs.

Plain data, importable without starting anything, so that ``migflow validate``
and ``migflow plugins`` stay fast.  docs/qemu-backend.md has the same table for
users to read ("QEMU features").

Versions are those of upstream QEMU's QAPI schema (``# Since:`` of each
capability and parameter in ``qapi/migration.json``).  A QEMU older than a
feature lacks its name altogether: the backend then stops the step with
:func:`missing_message` (it learns what a QEMU offers from
``query-migrate-capabilities`` and ``query-qmp-schema`` at run time: validation
does not contact hosts).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "FEATURES",
    "FLAG_CAPABILITIES",
    "LIBVIRT_OPTIONS",
    "TLS_FILES",
    "UNSUPPORTED_FLAGS",
    "Feature",
    "missing_message",
    "rules",
    "version_tuple",
]

#: migrate-step flag -> the QEMU capability it switches on (both sides)
FLAG_CAPABILITIES = {
    "parallel": "multifd",
    "compressed": "xbzrle",
    "auto-converge": "auto-converge",
    "postcopy": "postcopy-ram",
    "zerocopy": "zero-copy-send",
}

#: flags the qemu backend cannot honour, with the reason; refused by ``migflow validate``
UNSUPPORTED_FLAGS = {
    "persistent": "the qemu backend keeps no domain definitions",
    "undefinesource": "the qemu backend keeps no domain definitions",
    "tunnelled": "only libvirtd can tunnel the migration stream",
    "unsafe": "a libvirt safety check; QEMU has none to skip",
    "abort-on-error": "a libvirt flag (abort on guest I/O errors)",
    "paused": "not implemented by the qemu backend",
    "copy-storage-all": "the qemu backend's guest has no disk to copy (libvirt copies disks with an NBD server and blockdev-mirror)",
    "copy-storage-inc": "the qemu backend's guest has no disk to copy (libvirt copies disks with an NBD server and blockdev-mirror)",
    "copy-storage-synchronous-writes": "a libvirt storage-migration flag, and the qemu backend's guest has no disk",
    "offline": "an offline migration moves a libvirt domain definition; the qemu backend has none",
    "change-protection": "a libvirt flag (it forbids changing the domain definition during the migration)",
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

#: the files QEMU's tls-creds-x509 object reads from its ``dir`` (QEMU's fixed names), per endpoint
TLS_FILES = {
    "server": ("ca-cert.pem", "server-cert.pem", "server-key.pem"),
    "client": ("ca-cert.pem", "client-cert.pem", "client-key.pem"),
}


@dataclass(frozen=True)
class Feature:
    """A QEMU migration capability or parameter the docs' table lists.

    :param name: its QMP name.
    :param kind: ``capability`` or ``parameter``.
    :param since: the first QEMU release with it (``"8.1"``).
    :param key: how a workflow asks for it.
    :param note: what migflow does with it on the qemu backend.
    """

    name: str
    kind: str
    since: str
    key: str
    note: str = ""


FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("multifd", "capability", "4.0", "flag `parallel`, mode `qmp-multifd`"),
        Feature("xbzrle", "capability", "1.2", "flag `compressed`"),
        Feature("auto-converge", "capability", "1.6", "flag `auto-converge`"),
        Feature("postcopy-ram", "capability", "2.6", 'flag `postcopy` (with `postcopy_switch`, `timeout.action = "postcopy"`)'),
        Feature("zero-copy-send", "capability", "7.1", "flag `zerocopy`", "Linux only; multifd without compression or TLS"),
        Feature("multifd-compression", "parameter", "5.0", "parameter `multifd-compression` (`none`, `zlib`, `zstd`)"),
        Feature("multifd-zlib-level", "parameter", "5.0", "parameter `multifd-zlib-level`", "applied only since QEMU 9.0"),
        Feature("multifd-zstd-level", "parameter", "5.0", "parameter `multifd-zstd-level`", "applied only since QEMU 9.0"),
        Feature("tls-creds", "parameter", "2.7", "flag `tls`"),
        Feature("tls-hostname", "parameter", "2.7", "flag `tls`"),
        Feature("dirty-limit", "capability", "8.1", "capability `dirty-limit`"),
        Feature("vcpu-dirty-limit", "parameter", "8.1", "parameter `vcpu-dirty-limit`"),
        Feature("switchover-ack", "capability", "8.1", "capability `switchover-ack`"),
        Feature("avail-switchover-bandwidth", "parameter", "8.2", "parameter `avail-switchover-bandwidth`"),
        Feature("zero-page-detection", "parameter", "9.0", "parameter `zero-page-detection`"),
    )
}

#: the QEMU release whose migrate-set-parameters really applies multifd-zlib-level and
#: multifd-zstd-level (before it, QEMU accepts them and keeps 1: upstream commit "migration:
#: Properly apply migration compression level parameters", March 2024)
LEVELS_APPLIED_SINCE = "9.0"


def version_tuple(version: str) -> tuple[int, ...]:
    """``"7.2.22"`` -> ``(7, 2, 22)``; unparsable parts count as 0."""
    out = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def missing_message(kind: str, name: str, host: str, version: str) -> str:
    """The step's error when the QEMU on ``host`` (version ``version``) lacks a capability or parameter."""
    feature = FEATURES.get(name)
    if feature is not None and version_tuple(version) < version_tuple(feature.since):
        return f"{kind} {name} needs QEMU >= {feature.since}, this host ({host}) has QEMU {version}"
    return f"QEMU {version} on {host} has no migration {kind} {name}"


def rules() -> list:
    """Combinations the qemu backend refuses, checked by ``migflow validate``:
    each ``(condition(flags, capabilities, parameters, options), path, message)``.

    ``flags`` are the migrate step's (the mode's included), ``capabilities`` those
    switched on in the scenario (set-capabilities and the flags' own).
    """

    def zerocopy(f, c, p, o):
        return "zero-copy-send" in c

    return [
        (
            lambda f, c, p, o: zerocopy(f, c, p, o) and "multifd" not in c,
            "flags",
            "zerocopy needs multifd: use mode qmp-multifd or the parallel flag (QEMU: zero copy only available for multifd migration)",
        ),
        (
            lambda f, c, p, o: zerocopy(f, c, p, o) and ("xbzrle" in c or p.get("multifd-compression", "none") != "none"),
            "flags",
            "zerocopy works without compression: neither the compressed flag (xbzrle) nor multifd-compression (QEMU: zero copy only available for non-compressed non-TLS multifd migration)",
        ),
        (
            lambda f, c, p, o: zerocopy(f, c, p, o) and "tls" in f,
            "flags",
            "zerocopy works without TLS only (QEMU: zero copy only available for non-compressed non-TLS multifd migration)",
        ),
        (
            lambda f, c, p, o: "postcopy_switch" in o and "postcopy-ram" not in c,
            "postcopy_switch",
            "postcopy_switch needs the postcopy flag (post-copy must be enabled on both sides before the migration starts)",
        ),
    ]
