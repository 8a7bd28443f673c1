"""The lab's fixed layout: two hosts, their addresses and names.

::

    root namespace: bridge mflab0 198.18.0.254/24  (clients, e.g. migflow, live here)
        |-- mflab-a-br <veth> mflab-a-in 198.18.0.1   netns mflab-a: libvirtd, QEMU
        `-- mflab-b-br <veth> mflab-b-in 198.18.0.2   netns mflab-b: libvirtd, QEMU

Everything lives in 198.18.0.0/24, the range reserved for network benchmarking
(RFC 2544).  Pure data and lookups: importing this module starts nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from migflow.errors import HostError
from migflow.registry import HostPair

__all__ = [
    "BRIDGE",
    "BRIDGE_ADDRESS",
    "HOSTS",
    "LIBVIRTD_PORT",
    "LIBVIRTD_TLS_PORT",
    "PREFIX_LEN",
    "SUBNET",
    "VM_BRIDGE",
    "VM_BRIDGE_IN_HOST",
    "VM_PREFIX",
    "VM_PROBE_ADDRESS",
    "LabHost",
    "find_host",
    "host",
    "host_pair",
    "is_lab_uri",
    "vm_address",
]

BRIDGE = "mflab0"
BRIDGE_ADDRESS = "198.18.0.254"
PREFIX_LEN = 24
SUBNET = f"198.18.0.0/{PREFIX_LEN}"
LIBVIRTD_PORT = 16509
LIBVIRTD_TLS_PORT = 16514

#: The guests' network: one layer-2 segment across both hosts and the root
#: namespace, 198.18.0.128/25 (inside the lab's /24: the longer prefix routes
#: guest traffic here).  Each host has a bridge VM_BRIDGE_IN_HOST that guests'
#: NICs join, with an uplink veth to VM_BRIDGE in the root namespace, where the
#: network probes run from VM_PROBE_ADDRESS: outside both hosts.
VM_BRIDGE = "mflabvm"
VM_BRIDGE_IN_HOST = "mfvm0"
VM_PREFIX = "198.18.0.128/25"
VM_PROBE_ADDRESS = "198.18.0.129"


def vm_address(guest: int) -> str:
    """The address of guest ``guest`` (from 1) of a run on the VM network: 198.18.0.130 ..."""
    if not 1 <= guest <= 100:
        raise ValueError(f"guest {guest}: the VM network has room for 100 guests")
    return f"198.18.0.{129 + guest}"


@dataclass(frozen=True)
class LabHost:
    """One lab host.

    :param name: its network namespace (``mflab-a``).
    :param address: its address on the lab bridge.
    :param uri: the libvirt URI of its daemon.
    """

    name: str
    address: str
    uri: str

    @property
    def short(self) -> str:
        """``a`` for ``mflab-a``."""
        return self.name.rsplit("-", 1)[-1]

    @property
    def veths(self) -> tuple[str, str]:
        """(end on the root bridge, end inside the host's namespace)."""
        return f"{self.name}-br", f"{self.name}-in"

    @property
    def tls_uri(self) -> str:
        """The libvirt URI of its daemon over TLS, with the lab's client certificate (see :mod:`.pki`)."""
        from .pki import CLIENT_DIR

        return f"qemu+tls://{self.address}/system?pkipath={CLIENT_DIR}"

    @property
    def host_uuid(self) -> str:
        """Stable and distinct per host: libvirt refuses to migrate between hosts with one UUID."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"migflow-lab:{self.name}"))


HOSTS: tuple[LabHost, ...] = (
    LabHost("mflab-a", "198.18.0.1", "qemu+tcp://198.18.0.1/system"),
    LabHost("mflab-b", "198.18.0.2", "qemu+tcp://198.18.0.2/system"),
)


def host_pair() -> HostPair:
    """The lab's two hosts as a :class:`~migflow.registry.HostPair` (source a, destination b)."""
    return HostPair(HOSTS[0].uri, HOSTS[1].uri, lab=True)


def is_lab_uri(uri: object) -> bool:
    """True when ``uri`` names one of the lab's hosts: a URI whose host is a lab address
    (``qemu+tcp://198.18.0.1/system``), or ``qemu+lab://NAME``."""
    return isinstance(uri, str) and "://" in uri and find_host(uri) is not None


def find_host(key: object) -> LabHost | None:
    """A lab host by name (``mflab-a``), short name (``a``), address or URI; None when ``key`` names none.

    In a URI, only the address identifies a lab host, except in ``qemu+lab://``
    URIs, which may use the names: ``qemu+tcp://a/system`` is somebody's real host ``a``.
    """
    if not isinstance(key, str):
        return None
    if "://" in key:
        try:
            parts = urlsplit(key)
            hostname = parts.hostname
        except ValueError:
            return None
        for h in HOSTS:
            if hostname == h.address or (parts.scheme == "qemu+lab" and hostname in (h.name, h.short)):
                return h
        return None
    for h in HOSTS:
        if key in (h.name, h.short, h.address):
            return h
    return None


def host(key: str) -> LabHost:
    """Like :func:`find_host`, but a :class:`~migflow.errors.HostError` naming the lab's hosts when there is none."""
    h = find_host(key)
    if h is None:
        raise HostError(f"{key!r} is not a lab host", hint="lab hosts: " + ", ".join(h.name for h in HOSTS))
    return h
