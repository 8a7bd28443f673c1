"""The lab's public API: what tests, benchmarks and the lab's own commands use.

Other plugins reach the lab through hooks (``migflow_default_hosts``,
``migflow_prepare_hosts``, ``migflow_host_runner``), never through this
module, so that ``MIGFLOW_DISABLE_PLUGINS=lab`` really switches the lab off.
Every function that takes a host accepts a :class:`LabHost` or anything
:func:`find_host` understands (``mflab-a``, ``a``, an address or a URI).
"""

from __future__ import annotations

import subprocess
from typing import Any

from .daemons import command_on as _command_on
from .daemons import libvirtd_pid as _libvirtd_pid
from .daemons import qemu_pids as _qemu_pids
from .lifecycle import check_tls, down, is_up, link, shape, status, up
from .network import describe_link, netem_available
from .prereqs import accel, check_prerequisites
from .state import LAB_ROOT, STATE_FILE
from .system import Echo
from .topology import BRIDGE, BRIDGE_ADDRESS, HOSTS, LabHost, find_host, host, host_pair, is_lab_uri

__all__ = [
    "BRIDGE",
    "BRIDGE_ADDRESS",
    "HOSTS",
    "LAB_ROOT",
    "STATE_FILE",
    "LabHost",
    "accel",
    "check_prerequisites",
    "check_tls",
    "command_on",
    "describe_link",
    "down",
    "ensure_up",
    "find_host",
    "host",
    "host_pair",
    "is_lab_uri",
    "is_up",
    "libvirtd_pid",
    "link",
    "netem_available",
    "qemu_pids",
    "run_on",
    "shape",
    "status",
    "up",
]


def _host(h: LabHost | str) -> LabHost:
    return h if isinstance(h, LabHost) else host(h)


def ensure_up(echo: Echo) -> None:
    """Bring the lab up when it is down, saying so through ``echo``."""
    if not is_up():
        echo("the lab is down; bringing it up (migflow lab up)")
        up(echo=echo)


def libvirtd_pid(h: LabHost | str) -> int | None:
    """PID of the host's running libvirtd, or None."""
    return _libvirtd_pid(_host(h))


def qemu_pids(h: LabHost | str) -> list[int]:
    """PIDs of the QEMU processes running inside the host's namespace."""
    return _qemu_pids(_host(h))


def command_on(h: LabHost | str, argv: list[str]) -> list[str]:
    """The argv that runs ``argv`` inside the host's network and mount namespaces (for ``Popen``)."""
    return _command_on(_host(h), argv)


def run_on(h: LabHost | str, argv: list[str], **subprocess_kwargs: Any) -> subprocess.CompletedProcess:
    """Run ``argv`` on a lab host; keyword arguments go to :func:`subprocess.run` (``check`` defaults to False)."""
    check = subprocess_kwargs.pop("check", False)
    return subprocess.run(command_on(h, argv), check=check, **subprocess_kwargs)
