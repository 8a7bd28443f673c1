"""What the lab needs from this machine: root, commands, libvirt's QEMU driver,
users and groups, KVM or TCG, and a free subnet."""

from __future__ import annotations

import glob
import os

from migflow.errors import HostError, PrerequisiteError

from .system import INSTALL_HINT, run, which
from .topology import BRIDGE, PREFIX_LEN, SUBNET, VM_BRIDGE

__all__ = ["accel", "check_addresses", "check_prerequisites"]

_COMMANDS = {  # command -> Debian package
    "libvirtd": "libvirt-daemon",
    "qemu-system-x86_64": "qemu-system-x86",
    "ip": "iproute2",
    "tc": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "mount": "mount",
}


def accel() -> str:
    """``"kvm"`` when /dev/kvm works, else ``"tcg"``; ``MIGFLOW_LAB_ACCEL=tcg`` (or ``kvm``) forces it."""
    from migflow.kvm import accel as probe

    return probe("MIGFLOW_LAB_ACCEL")


def check_prerequisites() -> None:
    """Raise one :class:`~migflow.errors.PrerequisiteError` naming everything the machine lacks."""
    if os.geteuid() != 0:
        raise PrerequisiteError(
            "the lab needs root (it creates network namespaces, a bridge and libvirt daemons)", hint="run as root, e.g. sudo migflow lab up"
        )
    missing = []
    cmds = [c for c in _COMMANDS if not which(c)]
    if cmds:
        pkgs = sorted({_COMMANDS[c] for c in cmds})
        missing.append(f"commands {', '.join(cmds)} (Debian packages {', '.join(pkgs)})")
    elif not glob.glob("/usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so") and not glob.glob(
        "/usr/lib*/libvirt/connection-driver/libvirt_driver_qemu.so"
    ):
        missing.append("libvirt's QEMU driver (Debian package libvirt-daemon-driver-qemu)")
    import grp
    import pwd

    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        missing.append("user libvirt-qemu (libvirt's QEMU driver will not start without it, even with user=root)")
    for group in ("kvm", "libvirt-qemu"):
        try:
            grp.getgrnam(group)
        except KeyError:
            missing.append(f"group {group}")
    try:
        import libvirt  # noqa: F401
    except ImportError:
        missing.append("the Python module libvirt (pip install libvirt-python; needs libvirt-dev and pkg-config)")
    if missing:
        raise PrerequisiteError("the lab cannot start; this machine lacks: " + "; ".join(missing), hint=INSTALL_HINT)


def check_addresses() -> None:
    """Refuse to start when something else on the machine already uses the lab's subnet."""
    proc = run(["ip", "-o", "-4", "addr", "show", "to", SUBNET], check=False)
    for line in proc.stdout.splitlines():
        dev = line.split()[1]
        if dev not in (BRIDGE, VM_BRIDGE):
            raise HostError(
                f"198.18.0.0/{PREFIX_LEN} is already used on this machine by {dev}",
                hint="the lab needs that subnet for itself; remove the address or the device",
            )
