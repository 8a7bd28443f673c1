"""The lab's Linux test guest: a Debian kernel and an initramfs of the lab's own programs.

Where the tiny multiboot guest (``migflow_lab.guest``) only dirties memory,
this guest also runs a NIC (a UDP echo responder) and writes a disk, so that
migrations with network and storage can be observed.  It speaks the tiny
guest's serial heartbeat protocol on its first serial port, so
:mod:`migflow_lab.heartbeat` parses it unchanged.

:func:`build_linux_guest` (in :mod:`.build`) returns the kernel, the initrd and
the base of the kernel command line.
"""

from .build import CMDLINE_BASE, build_linux_guest

__all__ = ["CMDLINE_BASE", "build_linux_guest"]
