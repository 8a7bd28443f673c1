"""Is hardware virtualization usable on this machine?  Shared by the lab and the QEMU backend."""

from __future__ import annotations

import fcntl
import os

__all__ = ["accel"]

_KVM_GET_API_VERSION = 0xAE00


def accel(*override_vars: str) -> str:
    """``"kvm"`` when /dev/kvm opens and answers KVM_GET_API_VERSION, else ``"tcg"``.

    The first of ``override_vars`` (environment variables) set to ``kvm`` or
    ``tcg`` forces the answer.
    """
    for var in override_vars:
        forced = os.environ.get(var, "").lower()
        if forced in ("kvm", "tcg"):
            return forced
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return "tcg"
    try:
        return "kvm" if fcntl.ioctl(fd, _KVM_GET_API_VERSION) == 12 else "tcg"
    except OSError:
        return "tcg"
    finally:
        os.close(fd)
